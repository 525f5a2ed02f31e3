// End-to-end training throughput (LM forward with hook capture + sparse-coder step + optimizer),
// next to sparsify's Trainer on this machine (fixtures/baselines.md: GPT-2-small-shaped random
// model, hookpoint h.6, 24576 latents, k 32, batch 8x256, signum: 381 tokens/s). Standalone:
//   node --conditions=sparsify-source --import tsx bench/train.ts [--steps N] [--threads T] [--skip-gpt2]
// Prints markdown and writes bench/out/train.md and bench/out/train.json.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadModel, numThreads, Rng, saveSafetensors, setNumThreads, Tensor } from '@sparsify/core';
import { kernelsLine } from './lib/machine.js';
import { DEFAULT_ASSETS_DIR, InMemoryTokenDataset, Trainer, embeddedDataset, trainConfig, type StepInfo, type TrainConfigInit } from '@sparsify/train';

const args = process.argv.slice(2);
const arg = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const steps = Number(arg('steps', '5'));
setNumThreads(Number(arg('threads', '2')));

/** A GPT-2-small-shaped model with random weights (124M params) in HF layout, in a temp folder. */
function writeRandomGpt2Small(dir: string): void {
  const D = 768, L = 12, V = 50257, P = 1024;
  const rng = new Rng(1);
  const t = new Map<string, Tensor>();
  const randn = (shape: number[], std: number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    // uniform with the given standard deviation
    return Tensor.from(rng.fillUniform(new Float32Array(n), -std * Math.sqrt(3), std * Math.sqrt(3)), shape);
  };
  const ones = (n: number) => Tensor.from(new Float32Array(n).fill(1), [n]);
  const zeros = (n: number) => Tensor.zeros([n]);
  t.set('transformer.wte.weight', randn([V, D], 0.02));
  t.set('transformer.wpe.weight', randn([P, D], 0.01));
  for (let i = 0; i < L; i++) {
    const p = `transformer.h.${i}`;
    t.set(`${p}.ln_1.weight`, ones(D));
    t.set(`${p}.ln_1.bias`, zeros(D));
    t.set(`${p}.attn.c_attn.weight`, randn([D, 3 * D], 0.02));
    t.set(`${p}.attn.c_attn.bias`, zeros(3 * D));
    t.set(`${p}.attn.c_proj.weight`, randn([D, D], 0.02));
    t.set(`${p}.attn.c_proj.bias`, zeros(D));
    t.set(`${p}.ln_2.weight`, ones(D));
    t.set(`${p}.ln_2.bias`, zeros(D));
    t.set(`${p}.mlp.c_fc.weight`, randn([D, 4 * D], 0.02));
    t.set(`${p}.mlp.c_fc.bias`, zeros(4 * D));
    t.set(`${p}.mlp.c_proj.weight`, randn([4 * D, D], 0.02));
    t.set(`${p}.mlp.c_proj.bias`, zeros(D));
  }
  t.set('transformer.ln_f.weight', ones(D));
  t.set('transformer.ln_f.bias', zeros(D));
  saveSafetensors(join(dir, 'model.safetensors'), t);
  for (const x of t.values()) x.dispose();
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({
      architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', n_embd: D, n_layer: L, n_head: 12, n_positions: P, n_inner: null,
      vocab_size: V, activation_function: 'gelu_new', layer_norm_epsilon: 1e-5, tie_word_embeddings: true, bos_token_id: 50256, eos_token_id: 50256,
    }),
  );
}

interface Row {
  name: string;
  setup: string;
  tokensPerSec: number;
  stepSec: number;
  sparsify?: number;
}

/** Median tokens/s over `steps` optimizer steps after one warm-up step. */
async function measure(modelDir: string, dataset: InMemoryTokenDataset, init: TrainConfigInit): Promise<{ tps: number; stepSec: number }> {
  const model = await loadModel(modelDir);
  const saveDir = mkdtempSync(join(tmpdir(), 'spx-bench-train-'));
  const times: number[] = [];
  let last = 0;
  let tokens = 0;
  let trainer: Trainer;
  trainer = new Trainer(trainConfig({ ...init, saveDir, logToWandb: false }), dataset, model, {
    save: false,
    onStep: (s: StepInfo) => {
      if (s.step > 1) times.push(s.elapsedSec - last);
      tokens = s.tokens / s.step;
      last = s.elapsedSec;
      if (s.step >= steps + 1) trainer.requestStop();
    },
  });
  await trainer.init();
  await trainer.fit();
  rmSync(saveDir, { recursive: true, force: true });
  model.dispose?.();
  times.sort((a, b) => a - b);
  const med = times[Math.floor(times.length / 2)];
  return { tps: tokens / med, stepSec: med };
}

const rows: Row[] = [];

// 1. The embedded default model (2 layers, width 128): its default run's settings, both layers.
{
  const ds = embeddedDataset({ epochs: 3, shuffleSeed: 42 });
  const r = await measure(DEFAULT_ASSETS_DIR, ds, { batchSize: 8, sae: { expansionFactor: 2, k: 24 }, lrWarmupSteps: 10 });
  rows.push({ name: 'embedded tiny GPT-2 (d 128, 2 layers)', setup: 'h.0 + h.1, 256 latents, k 24, batch 8x256, adam', tokensPerSec: r.tps, stepSec: r.stepSec });
}

// 2. GPT-2-small-shaped random model, the shape of sparsify's baseline.
if (!args.includes('--skip-gpt2')) {
  const dir = mkdtempSync(join(tmpdir(), 'spx-gpt2-small-'));
  writeRandomGpt2Small(dir);
  const T = 256;
  const n = 8 * (steps + 2);
  const rng = new Rng(2);
  const ids = Int32Array.from({ length: n * T }, () => Math.floor(rng.uniform() * 50257));
  const ds = new InMemoryTokenDataset(ids, T);
  const r = await measure(dir, ds, { batchSize: 8, hookpoints: ['h.6'], optimizer: 'signum', sae: { expansionFactor: 32, k: 32 } });
  rows.push({ name: 'GPT-2-small shape, random weights', setup: 'h.6, 24576 latents, k 32, batch 8x256, signum', tokensPerSec: r.tps, stepSec: r.stepSec, sparsify: 381 });
  if (!args.includes("--keep")) rmSync(dir, { recursive: true, force: true }); else console.error("kept", dir);
}

const lines = [
  `## Training throughput (end to end: LM forward + coder step + optimizer), ${numThreads()} threads`,
  '',
  `${kernelsLine()}.`,
  '',
  '| model | setup | tokens/s | s/step | sparsify tokens/s | speed-up |',
  '|---|---|---:|---:|---:|---:|',
  ...rows.map((r) => `| ${r.name} | ${r.setup} | ${Math.round(r.tokensPerSec).toLocaleString('en-US')} | ${r.stepSec.toFixed(3)} | ${r.sparsify ?? '-'} | ${r.sparsify ? (r.tokensPerSec / r.sparsify).toFixed(2) + 'x' : '-'} |`),
  '',
  `Median of ${steps} optimizer steps after one warm-up step. sparsify: Trainer.fit on the same shape (fixtures/baselines.md).`,
];
const md = lines.join('\n') + '\n';
process.stdout.write(md);
const out = join(dirname(fileURLToPath(import.meta.url)), 'out');
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'train.md'), md);
writeFileSync(join(out, 'train.json'), JSON.stringify({ threads: numThreads(), steps, rows }, null, 1) + '\n');
