/**
 * Transformer forward throughput on CPU: a GPT-2-small-shaped model (12 layers, 768 wide, 12
 * heads, vocab 50257, random float32 weights written by this script), batch 8 x 256 tokens,
 * capturing every decoder block (sparsify's default hookpoints), 2 threads.
 * Compared with transformers' GPT2Model on this machine (fixtures baselines.md: 733 tok/s, sdpa).
 * Then the six tiny fixture models at the same batch, against transformers' base models.
 *
 *   node --conditions=sparsify-source --import tsx bench/model.ts [--reps 3] [--threads 2]
 * Prints a markdown section and writes bench/out/model.md and bench/out/model.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Tensor, loadModel, setNumThreads } from '@sparsify/core';
import { kernelsLine } from './lib/machine.js';
import { GPT2_SMALL as CFG, makeGpt2Checkpoint as makeCheckpoint } from './lib/gpt2-checkpoint.js';

const args = process.argv.slice(2);
const arg = (k: string, d: number) => {
  const i = args.indexOf(k);
  return i >= 0 ? Number(args[i + 1]) : d;
};
const REPS = arg('--reps', 3);
const TINY_ONLY = args.includes('--tiny-only'); // skip the GPT-2-small run (quick checks)
const THREADS = arg('--threads', 2);
const BATCH = 8, SEQ = 256;
const BASELINE = { name: 'transformers GPT2Model (sdpa, torch 2.13, 2 threads)', tokPerS: 733 };

// transformers' base models (what sparsify loads for loss_fn='fvu') on the tiny fixture models,
// batch 8x256, sdpa, 2 threads (fixtures baselines.md).
const TINY_BASELINE: Record<string, { cls: string; tokPerS: number }> = {
  gpt2: { cls: 'GPT2Model', tokPerS: 125405 },
  gpt_neox: { cls: 'GPTNeoXModel', tokPerS: 174270 },
  llama: { cls: 'LlamaModel', tokPerS: 121364 },
  qwen2: { cls: 'Qwen2Model', tokPerS: 132989 },
  gemma: { cls: 'GemmaModel', tokPerS: 116490 },
  gemma2: { cls: 'Gemma2Model', tokPerS: 108021 },
};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  setNumThreads(THREADS);
  let times: number[] = [];
  let hookpointCount = 12;
  if (!TINY_ONLY) {
    const dir = join(tmpdir(), 'sparsify-bench-gpt2-small');
    makeCheckpoint(dir);
    const model = await loadModel(dir);
    const ids = new Int32Array(BATCH * SEQ);
    for (let i = 0; i < ids.length; i++) ids[i] = (i * 7919 + 13) % CFG.vocab_size;
    const tokens = Tensor.from(ids, [BATCH, SEQ]);
    const hookpoints = model.layerNames();
    hookpointCount = hookpoints.length;
    const run = async () => {
      const t0 = performance.now();
      const out = await model.forward(tokens, { hookpoints });
      const s = (performance.now() - t0) / 1000;
      for (const t of out.captured.values()) t.dispose();
      return s;
    };
    await run(); // warm-up (page in the mapped weights)
    times = [];
    for (let i = 0; i < REPS; i++) times.push(await run());
    model.dispose();
  }
  const sec = times.length ? median(times) : NaN;
  const tokPerS = (BATCH * SEQ) / sec;

  // Tiny fixture models (hidden 64, 2 layers, vocab 1024): per-call overhead matters here.
  const here = dirname(fileURLToPath(import.meta.url));
  const tiny: { name: string; tokPerS: number; baseline: number; cls: string }[] = [];
  for (const [name, base] of Object.entries(TINY_BASELINE)) {
    const m = await loadModel(join(here, '..', 'test', 'fixtures', 'model', 'models', name));
    const tids = new Int32Array(BATCH * SEQ).map((_, i) => (i * 131 + 7) % m.vocabSize);
    const tt = Tensor.from(tids, [BATCH, SEQ]);
    const hp = m.layerNames();
    const ts: number[] = [];
    for (let i = 0; i < 2 + 7; i++) {
      const t0 = performance.now();
      const o = await m.forward(tt, { hookpoints: hp });
      if (i >= 2) ts.push((performance.now() - t0) / 1000);
      for (const t of o.captured.values()) t.dispose();
    }
    tiny.push({ name, tokPerS: (BATCH * SEQ) / median(ts), baseline: base.tokPerS, cls: base.cls });
    m.dispose();
  }

  const result = {
    model: 'gpt2-small-shaped, random f32 (12 x 768, 12 heads, vocab 50257)',
    batch: [BATCH, SEQ],
    threads: THREADS,
    hookpoints: hookpointCount,
    seconds: times,
    medianSeconds: sec,
    tokensPerSecond: tokPerS,
    baseline: BASELINE,
    ratio: tokPerS / BASELINE.tokPerS,
    tiny,
    date: new Date().toISOString(),
  };
  const md = [
    '## Model forward (CPU)',
    '',
    `GPT-2-small-shaped model (random float32 weights), batch ${BATCH}x${SEQ}, capturing all ${hookpointCount} decoder blocks, ${THREADS} threads, median of ${REPS} after 1 warm-up.`,
    '',
    `${kernelsLine()}.`,
    '',
    '| implementation | tokens/s | median s | vs transformers |',
    '|---|---:|---:|---:|',
    `| sparsify-node \`model.forward\` | ${tokPerS.toFixed(0)} | ${sec.toFixed(3)} | ${result.ratio.toFixed(2)}x |`,
    `| ${BASELINE.name} | ${BASELINE.tokPerS} | ${((BATCH * SEQ) / BASELINE.tokPerS).toFixed(3)} | 1.00x |`,
    '',
    `Tiny fixture models (hidden 64, 2 layers, vocab 1024), batch ${BATCH}x${SEQ}, all blocks captured, median of 7 after 2 warm-ups, vs transformers' base model (sdpa):`,
    '',
    '| model | sparsify-node tokens/s | transformers tokens/s | ratio |',
    '|---|---:|---:|---:|',
    ...tiny.map((t) => `| ${t.name} | ${t.tokPerS.toFixed(0)} | ${t.baseline} (${t.cls}) | ${(t.tokPerS / t.baseline).toFixed(2)}x |`),
    '',
  ].join('\n');
  console.log(md);
  const out = join(dirname(fileURLToPath(import.meta.url)), 'out');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'model.md'), md + '\n');
  writeFileSync(join(out, 'model.json'), JSON.stringify(result, null, 2) + '\n');
}

await main();
