/**
 * evaluate() throughput against the same computation in PyTorch (bench/ref/torch_eval.py:
 * transformers + the coders spliced by forward hooks), same model, coders and rows, same run.
 * Model: the embedded tiny GPT-2 (default) or a GPT-2-small-shaped one with random weights
 * (--small). Two random TopK SAEs on blocks 1 and (last - 1) (tiny: 0 and 1); rows of random token ids.
 *
 *   node --conditions=sparsify-source --import tsx bench/eval.ts [--small] [--rows 16] [--ctx 128] [--batch 4] [--threads 2]
 *   SPARSIFY_BENCH_PYTHON: a python with torch and transformers (default: python3 if it has them)
 * Prints a markdown section (tokens/s of both, and the shared-prefix gain) and writes bench/out/eval.{md,json}.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { SparseCoder, loadModel, setNumThreads } from '@sparsify/core';
import { DEFAULT_ASSETS_DIR, evaluate } from '@sparsify/train';
import { makeGpt2Checkpoint } from './lib/gpt2-checkpoint.js';
import { benchThreads, kernelsLine, loadLine, machineLine } from './lib/machine.js';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const arg = (k: string, d: number) => (args.includes(k) ? Number(args[args.indexOf(k) + 1]) : d);
const ROWS = arg('--rows', 16), CTX = arg('--ctx', 128), BATCH = arg('--batch', 4), THREADS = arg('--threads', benchThreads());
const small = args.includes('--small');

setNumThreads(THREADS);
const work = mkdtempSync(join(tmpdir(), 'spx-bench-eval-'));
let modelDir = DEFAULT_ASSETS_DIR;
if (small) {
  modelDir = join(work, 'gpt2-small');
  makeGpt2Checkpoint(modelDir);
}
const model = await loadModel(modelDir);
const L = model.numLayers;
const hooks = L > 2 ? ['h.1', `h.${L - 2}`] : ['h.0', `h.${L - 1}`];
const codersDir = join(work, 'coders');
const coders = new Map<string, SparseCoder>();
for (const [i, h] of hooks.entries()) {
  const c = await SparseCoder.create(model.width(h), { expansionFactor: 8, k: 32 }, { seed: i });
  await c.saveToDisk(join(codersDir, h));
  coders.set(h, c);
}
const ids = Int32Array.from({ length: ROWS * CTX }, (_, i) => (i * 7919 + 13) % model.vocabSize);
const tokensPath = join(work, 'tokens.json');
writeFileSync(tokensPath, JSON.stringify({ shape: [ROWS, CTX], input_ids: [...ids] }));
const dataset = { length: ROWS, ctxLen: CTX, rows: (idx: readonly number[] | Int32Array) => Int32Array.from([...idx].flatMap((r) => [...ids.subarray(r * CTX, (r + 1) * CTX)])) };

const ours = await evaluate(model, coders, dataset, { batchSize: BATCH });
const noPrefix = await evaluate(model, coders, dataset, { batchSize: BATCH, sharedPrefix: false });

function findPython(): string | undefined {
  if (process.env.SPARSIFY_BENCH_PYTHON) return process.env.SPARSIFY_BENCH_PYTHON;
  return spawnSync('python3', ['-c', 'import torch, transformers'], { stdio: 'ignore' }).status === 0 ? 'python3' : undefined;
}
const py = findPython();
let ref: { seconds: number; ce_clean: number; ce_spliced: Record<string, number> } | undefined;
let refWhy = 'no python with torch + transformers (set SPARSIFY_BENCH_PYTHON)';
if (py) {
  const r = spawnSync(py, [join(here, 'ref', 'torch_eval.py'), modelDir, codersDir, tokensPath, String(BATCH), String(THREADS)], { encoding: 'utf-8' });
  if (r.status === 0) ref = JSON.parse(r.stdout.trim().split('\n').pop()!);
  else refWhy = `torch_eval.py failed: ${r.stderr.slice(-400)}`;
}

const tok = ROWS * CTX;
const lines = [
  `## evaluate() (${small ? 'GPT-2-small shape, random weights' : 'embedded tiny GPT-2'}, ${hooks.length} SAEs at ${hooks.join(', ')}, ${ROWS} x ${CTX} tokens, batch ${BATCH}, ${THREADS} threads)`,
  '',
  `Machine: ${machineLine()}; load average ${loadLine()} (shared with other jobs: timings are indicative only).`,
  '',
  `${kernelsLine()}.`,
  '',
  '| implementation | seconds | tokens/s |',
  '|---|---|---|',
  `| sparsify-node evaluate() (shared prefix) | ${ours.elapsed_s.toFixed(2)} | ${Math.round(tok / ours.elapsed_s)} |`,
  `| sparsify-node evaluate() (every forward from the embeddings) | ${noPrefix.elapsed_s.toFixed(2)} | ${Math.round(tok / noPrefix.elapsed_s)} |`,
  ref ? `| PyTorch: transformers + forward hooks (bench/ref/torch_eval.py) | ${ref.seconds.toFixed(2)} | ${Math.round(tok / ref.seconds)} |` : `| PyTorch | - | ${refWhy} |`,
  '',
];
if (ref) {
  const d = Math.max(Math.abs(ref.ce_clean - ours.ce_loss_clean), ...hooks.map((h) => Math.abs(ref!.ce_spliced[h] - ours.hookpoints[h].ce_loss_spliced)));
  lines.push(`Same numbers: max |CE difference| between the two = ${d.toExponential(2)} (clean and spliced).`, '');
}
const section = lines.join('\n');
console.log(section);
mkdirSync(join(here, 'out'), { recursive: true });
writeFileSync(join(here, 'out', 'eval.md'), section + '\n');
writeFileSync(
  join(here, 'out', 'eval.json'),
  JSON.stringify({ rows: ROWS, ctx: CTX, batch: BATCH, threads: THREADS, hooks, seconds: ours.elapsed_s, secondsNoPrefix: noPrefix.elapsed_s, reference: ref ?? null }, null, 2),
);
for (const c of coders.values()) c.dispose();
model.dispose();
