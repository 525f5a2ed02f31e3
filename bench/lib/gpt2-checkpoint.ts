/**
 * A GPT-2-small-shaped checkpoint (12 layers, 768 wide, 12 heads, vocab 50257, random float32
 * weights, tied lm_head) written once into a folder, for the forward benchmarks (bench/model.ts
 * on CPU, bench/cuda.ts on GPU, bench/ref/torch_gpt2_forward.py for transformers).
 */
import { closeSync, existsSync, mkdirSync, openSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export const GPT2_SMALL = { n_embd: 768, n_layer: 12, n_head: 12, vocab_size: 50257, n_positions: 1024 };

/** Writes a random GPT-2 checkpoint (once; reused from the temp folder). */
export function makeGpt2Checkpoint(dir: string): void {
  if (existsSync(join(dir, 'model.safetensors'))) return;
  mkdirSync(dir, { recursive: true });
  const H = GPT2_SMALL.n_embd, I = 4 * H;
  const shapes: [string, number[]][] = [
    ['transformer.wte.weight', [GPT2_SMALL.vocab_size, H]],
    ['transformer.wpe.weight', [GPT2_SMALL.n_positions, H]],
    ['transformer.ln_f.weight', [H]],
    ['transformer.ln_f.bias', [H]],
  ];
  for (let l = 0; l < GPT2_SMALL.n_layer; l++) {
    const p = `transformer.h.${l}.`;
    shapes.push(
      [p + 'ln_1.weight', [H]], [p + 'ln_1.bias', [H]], [p + 'ln_2.weight', [H]], [p + 'ln_2.bias', [H]],
      [p + 'attn.c_attn.weight', [H, 3 * H]], [p + 'attn.c_attn.bias', [3 * H]],
      [p + 'attn.c_proj.weight', [H, H]], [p + 'attn.c_proj.bias', [H]],
      [p + 'mlp.c_fc.weight', [H, I]], [p + 'mlp.c_fc.bias', [I]],
      [p + 'mlp.c_proj.weight', [I, H]], [p + 'mlp.c_proj.bias', [H]],
    );
  }
  const header: Record<string, unknown> = {};
  let off = 0;
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1) * 4;
    header[name] = { dtype: 'F32', shape, data_offsets: [off, off + n] };
    off += n;
  }
  let json = Buffer.from(JSON.stringify(header));
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const tmp = join(dir, 'model.safetensors.tmp');
  const fd = openSync(tmp, 'w');
  writeSync(fd, len);
  writeSync(fd, json);
  let seed = 0x9e3779b9;
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    const isNormW = /ln_.*weight|ln_f\.weight/.test(name);
    const chunk = new Float32Array(Math.min(n, 1 << 20));
    for (let done = 0; done < n; done += chunk.length) {
      const m = Math.min(chunk.length, n - done);
      for (let i = 0; i < m; i++) {
        seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
        const u = (seed >>> 0) / 4294967296 - 0.5;
        chunk[i] = isNormW ? 1 + 0.1 * u : 0.07 * u; // ~ std 0.02
      }
      writeSync(fd, new Uint8Array(chunk.buffer, 0, m * 4));
    }
  }
  closeSync(fd);
  renameSync(tmp, join(dir, 'model.safetensors'));
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({ architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', activation_function: 'gelu_new', layer_norm_epsilon: 1e-5, tie_word_embeddings: true, ...GPT2_SMALL }),
  );
}

