// Shared pieces of the feature tests: the tiny GPT-2 fixture, its token rows, and a brute-force
// dense reference that materialises every activation (tokens x latents) and derives each field
// of a feature record from it with plain sorts and counts.
import { loadModel, loadSafetensors, SparseCoder, type LanguageModel } from '@sparsify/core';
import { InMemoryTokenDataset } from '@sparsify/train';
import { join } from 'node:path';

export const FIX = join(import.meta.dirname, '..', 'fixtures', 'train');
export const MODEL_DIR = join(FIX, 'models', 'gpt2');
export const SAE_DIR = join(FIX, 'gpt2_sae', 'final', 'h.0');
export const TRANSCODER_DIR = join(FIX, 'gpt2_transcoder', 'final', 'h.0.mlp');

export function fixtureDataset(rows = 64): InMemoryTokenDataset {
  const t = loadSafetensors(join(FIX, 'dataset.safetensors')).get('input_ids')!;
  const [, T] = t.shape;
  const ids = t.toInt32Array().slice(0, rows * T);
  t.dispose();
  return new InMemoryTokenDataset(ids, T);
}

export const r6 = (x: number) => (x === 0 ? 0 : +x.toPrecision(6));

export interface Dense {
  /** [N, M] activations (the k-sparse code, zeros elsewhere). */
  acts: Float32Array;
  N: number;
  M: number;
  T: number;
  tokens: Int32Array;
  ignored: Uint8Array;
}

/** The code of every token, materialised dense, from the native encode of the whole dataset at once. */
export async function denseCode(model: LanguageModel, coder: SparseCoder, hookpoint: string, ds: InMemoryTokenDataset, ignore: number[]): Promise<Dense & { x: Float32Array }> {
  const { Tensor } = await import('@sparsify/core');
  const R = ds.length, T = ds.ctxLen;
  const tokens = ds.rows(Array.from({ length: R }, (_, i) => i));
  const input = Tensor.from(tokens, [R, T]);
  const out = await model.forward(input, { hookpoints: [hookpoint], captureInputs: coder.cfg.transcode });
  input.dispose();
  const xT = coder.cfg.transcode ? out.capturedInputs!.get(hookpoint)! : out.captured.get(hookpoint)!;
  const enc = await coder.encode(xT);
  const idx = enc.topIndices.toInt32Array();
  const act = enc.topActs.toFloat32Array();
  const k = enc.topIndices.shape[1];
  const x = xT.toFloat32Array();
  for (const t of out.captured.values()) t.dispose();
  for (const t of out.capturedInputs?.values() ?? []) t.dispose();
  enc.topActs.dispose();
  enc.topIndices.dispose();
  const N = R * T, M = coder.numLatents;
  const acts = new Float32Array(N * M);
  for (let n = 0; n < N; n++) for (let j = 0; j < k; j++) if (act[n * k + j] > 0) acts[n * M + idx[n * k + j]] = act[n * k + j];
  const ignored = new Uint8Array(N);
  for (let n = 0; n < N; n++) if (ignore.includes(tokens[n])) ignored[n] = 1;
  for (let n = 0; n < N; n++) if (ignored[n]) for (let i = 0; i < M; i++) acts[n * M + i] = 0;
  return { acts, N, M, T, tokens, ignored, x };
}

/** Top-k of relu(pre-activations) per token, in double precision from the coder's weights (sparsify's TopK encoder). */
export function referenceTopK(coder: SparseCoder, x: Float32Array, N: number): { sets: Set<number>[]; kth: number[]; next: number[] } {
  const p = coder.params();
  const W = p.get('encoder.weight')!.toFloat32Array();
  const b = p.get('encoder.bias')!.toFloat32Array();
  const bDec = p.get('b_dec')!.toFloat32Array();
  const D = coder.dIn, M = coder.numLatents, k = coder.cfg.k;
  const sets: Set<number>[] = [], kth: number[] = [], next: number[] = [];
  const pre = new Float64Array(M);
  for (let n = 0; n < N; n++) {
    for (let i = 0; i < M; i++) {
      let s = b[i];
      for (let d = 0; d < D; d++) s += W[i * D + d] * (x[n * D + d] - (coder.cfg.transcode ? 0 : bDec[d]));
      pre[i] = Math.max(0, s);
    }
    const order = Array.from({ length: M }, (_, i) => i).sort((a, c) => pre[c] - pre[a] || a - c);
    sets.push(new Set(order.slice(0, k).filter((i) => pre[i] > 0)));
    kth.push(pre[order[k - 1]]);
    next.push(pre[order[k]]);
  }
  return { sets, kth, next };
}

export async function loadFixture(): Promise<{ model: LanguageModel; sae: SparseCoder; transcoder: SparseCoder }> {
  return {
    model: await loadModel(MODEL_DIR),
    sae: await SparseCoder.loadFromDisk(SAE_DIR),
    transcoder: await SparseCoder.loadFromDisk(TRANSCODER_DIR),
  };
}
