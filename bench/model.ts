/**
 * Transformer forward throughput on CPU: a GPT-2-small-shaped model (12 layers, 768 wide, 12
 * heads, vocab 50257, random float32 weights written by bench/lib/gpt2-checkpoint.ts), batch 8 x
 * 256 tokens, capturing every decoder block (sparsify's default hookpoints); then the six tiny
 * fixture models at the same batch. Next to transformers' base model (what sparsify loads: GPT2Model,
 * LlamaModel, ...) on the same checkpoint in the same run, single runs alternated
 * (bench/ref/transformers_cpu_forward.py); "not measured" when no Python with torch and transformers.
 *
 *   node --conditions=sparsify-source --import tsx bench/model.ts [--reps 3] [--threads 2] [--tiny-only] [--smoke]
 *   env SPARSIFY_BENCH_PYTHON (a python with torch and transformers; 'none' for ours only)
 * Prints a markdown section and writes bench/out/model.md and bench/out/model.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Tensor, loadModel, setNumThreads, type LanguageModel } from '@sparsify/core';
import { alternate, type Alternated } from './lib/alternate.js';
import { sectionHeaderLines, smokeMode } from './lib/machine.js';
import { GPT2_SMALL as CFG, makeGpt2Checkpoint as makeCheckpoint } from './lib/gpt2-checkpoint.js';
import { startReference } from './lib/py-server.js';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const arg = (k: string, d: number) => {
  const i = args.indexOf(k);
  return i >= 0 ? Number(args[i + 1]) : d;
};
const SMOKE = smokeMode();
const REPS = arg('--reps', SMOKE ? 1 : 3);
const TINY_REPS = SMOKE ? 1 : 5;
const TINY_ONLY = SMOKE || args.includes('--tiny-only'); // skip the GPT-2-small run (quick checks)
const THREADS = arg('--threads', Number(process.env.SPARSIFY_BENCH_THREADS ?? 2));
const BATCH = 8, SEQ = SMOKE ? 32 : 256;
const TINY = ['gpt2', 'gpt_neox', 'llama', 'qwen2', 'gemma', 'gemma2'];

interface Row {
  name: string;
  /** transformers' class, when the reference loaded the model. */
  cls?: string;
  reps: number;
  tokens: number;
  oursTokPerS: number;
  refTokPerS?: number;
  ratio?: number;
  oursSeconds: number[];
  refSeconds: number[];
  load: number;
}

async function main() {
  setNumThreads(THREADS);
  const side = await startReference(join(here, 'ref', 'transformers_cpu_forward.py'), ['torch', 'transformers'], { threads: THREADS }, THREADS);
  const library = side.ref?.library;
  const rows: Row[] = [];

  /** Times model.forward capturing every block, alternating with transformers on the same folder. */
  async function measure(name: string, dir: string, mul: number, add: number, reps: number): Promise<void> {
    const model: LanguageModel = await loadModel(dir);
    const ids = new Int32Array(BATCH * SEQ).map((_, i) => (i * mul + add) % model.vocabSize);
    const tokens = Tensor.from(ids, [BATCH, SEQ]);
    const hookpoints = model.layerNames();
    let cls: string | undefined;
    if (side.ref) {
      try {
        cls = String((await side.ref.request({ op: 'load', dir, batch: BATCH, seq: SEQ, mul, add })).cls);
      } catch (e) {
        side.note = `${name}: ${(e as Error).message}`;
        side.ref.close();
        side.ref = undefined;
      }
    }
    const t: Alternated = await alternate(reps, async () => {
      const out = await model.forward(tokens, { hookpoints });
      for (const c of out.captured.values()) c.dispose();
    }, side, side.ref ? { op: 'time' } : undefined);
    tokens.dispose();
    model.dispose();
    const n = BATCH * SEQ;
    rows.push({
      name, cls, reps, tokens: n, oursTokPerS: n / t.ours, refTokPerS: t.ref ? n / t.ref : undefined,
      ratio: t.ref ? t.ref / t.ours : undefined, oursSeconds: t.oursRuns, refSeconds: t.refRuns, load: t.load,
    });
    console.error(`model: ${name} done`);
  }

  if (!TINY_ONLY) {
    const dir = join(tmpdir(), 'sparsify-bench-gpt2-small');
    makeCheckpoint(dir);
    await measure(`GPT-2-small shape (${CFG.n_layer} x ${CFG.n_embd}, vocab ${CFG.vocab_size})`, dir, 7919, 13, REPS);
  }
  // Tiny fixture models (hidden 64, 2 layers, vocab 1024): per-call overhead matters here.
  for (const name of TINY) await measure(name, join(here, '..', 'test', 'fixtures', 'model', 'models', name), 131, 7, TINY_REPS);
  side.ref?.close();

  const fmt = (v: number) => Math.round(v).toLocaleString('en-US');
  const refCell = (r: Row) => (r.refTokPerS ? `${fmt(r.refTokPerS)} (${r.cls})` : 'not measured');
  const md = [
    '## Model forward (CPU)',
    '',
    ...sectionHeaderLines(),
    `Batch ${BATCH}x${SEQ}, every decoder block captured, ${THREADS} threads, float32. Median of ${REPS} (GPT-2-small shape) / ${TINY_REPS} (tiny fixture models: hidden 64, 2 layers, vocab 1024) after one warm-up each.`,
    '',
    library
      ? `transformers: the base model on the same checkpoint and tokens in this run (${library}, sdpa attention, inference_mode, a forward hook on every block), single runs alternated with ours (bench/ref/transformers_cpu_forward.py).`
      : `transformers: not measured in this run (${side.note}); no figures from other machines are used.`,
    ...(library && side.note ? ['', `Reference stopped: ${side.note}.`] : []),
    '',
    '| model | ours tokens/s | transformers tokens/s | ours / transformers | load (1 min) |',
    '|---|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.name} | ${fmt(r.oursTokPerS)} | ${refCell(r)} | ${r.ratio ? `${r.ratio.toFixed(2)}x` : 'not measured'} | ${r.load.toFixed(1)} |`),
    '',
  ].join('\n');
  console.log(md);
  const out = join(here, 'out');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'model.md'), md + '\n');
  writeFileSync(
    join(out, 'model.json'),
    JSON.stringify({ batch: [BATCH, SEQ], threads: THREADS, smoke: SMOKE, reference: library ?? null, refNote: side.note, rows, date: new Date().toISOString() }, null, 2) + '\n',
  );
}

await main();
