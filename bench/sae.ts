// Sparse coder throughput on CPU next to sparsify's own SparseCoder (PyTorch CPU) timed in the same
// run, single runs alternated (bench/ref/sparsify_cpu_sae.py); "not measured" when no Python with
// torch and sparsify is available. Standalone:
//   node --conditions=sparsify-source --import tsx bench/sae.ts [--reps N] [--threads T] [--only 128]
//   env SPARSIFY_BENCH_PYTHON (a python with torch), SPARSIFY_BENCH_PYTHONPATH (prepended to its
//   PYTHONPATH: sparsify's source and its dependencies schedulefree and simple_parsing)
// Prints a markdown table and writes bench/out/sae.md and bench/out/sae.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { createOptimizer, gemmBf16Path, nativePath, Rng, setNumThreads, SparseCoder, Tensor } from '@sparsify/core';
import { sectionHeaderLines, smokeMode } from './lib/machine.js';
import { findPython, PyServer, referenceEnv } from './lib/py-server.js';

const args = process.argv.slice(2);
const arg = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const smoke = smokeMode(); // tiny shape, one run: checks the harness, not the speed
const reps = Number(arg('reps', smoke ? '1' : '3'));
const threads = Number(arg('threads', process.env.SPARSIFY_BENCH_THREADS ?? '2'));
const only = arg('only', '');
setNumThreads(threads);

const SHAPES = (smoke
  ? [{ d: 64, m: 512, k: 8, n: 256 }]
  : [
      { d: 768, m: 24576, k: 32, n: 4096 },
      { d: 512, m: 16384, k: 32, n: 4096 },
      { d: 128, m: 4096, k: 16, n: 8192 },
    ]
).filter((s) => !only || String(s.d) === only);

// sparsify's side, when a Python with torch and sparsify runs.
const pyEnv = referenceEnv(threads);
let ref: PyServer | undefined;
let refNote = '';
{
  const { python, why } = findPython(['torch', 'sparsify', 'schedulefree'], pyEnv);
  if (!python) refNote = why;
  else {
    try {
      ref = new PyServer(python, join(dirname(fileURLToPath(import.meta.url)), 'ref', 'sparsify_cpu_sae.py'), { threads }, pyEnv);
      await ref.start();
    } catch (e) {
      refNote = `${python}: ${(e as Error).message}`;
      ref = undefined;
    }
  }
}
const startedLibrary = ref?.library; // kept when the reference stops mid-way
const pause = () => new Promise((r) => setTimeout(r, 250)); // the reference's OpenMP threads stop spinning

// Median wall seconds of ours and (when `what` is given and the reference runs) of sparsify, single runs
// alternated after one warm-up each; also records the process CPU seconds per call of ours (cpu[label]).
const cpu: Record<string, number> = {};
async function median(fn: () => Promise<void>, what = '', label = ''): Promise<{ ours: number; ref?: number }> {
  const useRef = async (req: unknown) => {
    if (!ref || !what) return undefined;
    try {
      const r = (await ref.request(req)).seconds as number[];
      await pause();
      return r;
    } catch (e) {
      refNote = (e as Error).message;
      ref = undefined;
      return undefined;
    }
  };
  await fn(); // warm-up
  await useRef({ op: 'time', what, reps: 0, warmup: 1 });
  const t: number[] = [];
  const r: number[] = [];
  let cpuSeconds = 0;
  for (let i = 0; i < reps; i++) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await fn();
    t.push(Number(process.hrtime.bigint() - t0) / 1e9);
    const c = process.cpuUsage(c0);
    cpuSeconds += (c.user + c.system) / 1e6;
    const s = await useRef({ op: 'time', what, reps: 1 });
    if (s) r.push(...s);
  }
  if (label) cpu[label] = cpuSeconds / reps;
  const mid = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  return { ours: mid(t), ref: r.length === reps && ref ? mid(r) : undefined };
}

type Pair = { ours: number; sparsify?: number }; // tokens/s
interface Row { encodeBf16: number; trainCpuSeconds: number; d: number; m: number; k: number; n: number; encode: Pair; decode: number; forward: Pair; train: Pair; trainAuxk: Pair }
const rows: Row[] = [];
const loadStart = loadavg()[0];
for (const s of SHAPES) {
  const coder = await SparseCoder.create(s.d, { numLatents: s.m, k: s.k }, { seed: 0 });
  const rng = new Rng(1);
  const x = Tensor.from(Float32Array.from({ length: s.n * s.d }, () => rng.normal()), [s.n, s.d]);
  await coder.initBiasesFromBatch(x);
  if (ref) {
    try {
      await ref.request({ op: 'shape', ...s });
    } catch (e) {
      refNote = (e as Error).message;
      ref = undefined;
    }
  }
  const perSec = (t: { ours: number; ref?: number }): Pair => ({ ours: s.n / t.ours, sparsify: t.ref ? s.n / t.ref : undefined });
  const enc = await coder.encode(x);
  const tEnc = await median(async () => {
    const r = await coder.encode(x);
    r.topActs.dispose();
    r.topIndices.dispose();
  }, 'encode');
  // The opt-in bf16 compute mode (ours only: sparsify's CPU encode has no bf16 counterpart here).
  const tEncBf16 = await median(async () => {
    const r = await coder.encode(x, { computeDtype: 'bf16' });
    r.topActs.dispose();
    r.topIndices.dispose();
  });
  const tDec = await median(async () => (await coder.decode(enc.topActs, enc.topIndices)).dispose());
  const tFwd = await median(async () => {
    const r = await coder.forward(x);
    r.saeOut.dispose();
  }, 'forward');
  const opt = createOptimizer('signum', [coder]);
  const didFire = Tensor.zeros([s.m], { dtype: 'int32' });
  const tTrain = await median(async () => {
    await coder.forwardBackward(x, { auxkAlpha: 0, didFire });
    await opt.step();
  }, 'train', `train${s.d}`);
  const dead = Uint8Array.from({ length: s.m }, (_, i) => (i % 10 === 0 ? 1 : 0));
  const tAux = await median(async () => {
    await coder.forwardBackward(x, { auxkAlpha: 1 / 32, deadMask: dead, didFire });
    await opt.step();
  }, 'train_auxk');
  rows.push({ ...s, encodeBf16: s.n / tEncBf16.ours, trainCpuSeconds: cpu[`train${s.d}`], encode: perSec(tEnc), decode: s.n / tDec.ours, forward: perSec(tFwd), train: perSec(tTrain), trainAuxk: perSec(tAux) });
  opt.dispose();
  coder.dispose();
  console.error(`done ${s.d}x${s.m}`);
}
const refLibrary = startedLibrary;
ref?.close();

const fmt = (v: number) => Math.round(v).toLocaleString('en-US');
const cell = (p: Pair) => (p.sparsify ? `${fmt(p.ours)} (${fmt(p.sparsify)}, ${(p.ours / p.sparsify).toFixed(2)}x)` : `${fmt(p.ours)} (not measured)`);
let md = `## Sparse coder throughput (tokens/s, ${threads} threads, median of ${reps})\n\n`;
md += sectionHeaderLines().join('\n') + '\n';
md += `addon: \`${nativePath()}\`; 1-min load average ${loadStart.toFixed(1)} at start, ${loadavg()[0].toFixed(1)} at end.\n\n`;
md += 'Train step = forwardBackward (decoder renormalisation, encode, decode, losses, backward) + signum optimizer step (projection, update, zero grads). ';
md += refLibrary
  ? `In parentheses: sparsify's own \`SparseCoder\` (${refLibrary}, ${threads} threads) measured in this run, single runs alternated with ours after one warm-up each (bench/ref/sparsify_cpu_sae.py), and ours / sparsify.\n\n`
  : `sparsify: not measured in this run (${refNote}); no figures from other machines are used.\n\n`;
if (refLibrary && refNote) md += `Reference stopped: ${refNote}; its later cells say not measured.\n\n`;
md += '| d_in | latents | k | tokens | encode (sparsify) | decode | forward (sparsify) | train step signum (sparsify) | train step AuxK 10% dead (sparsify) |\n';
md += '|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n';
for (const r of rows) md += `| ${r.d} | ${r.m} | ${r.k} | ${r.n} | ${cell(r.encode)} | ${fmt(r.decode)} | ${cell(r.forward)} | ${cell(r.train)} | ${cell(r.trainAuxk)} |\n`;
md += `\nbf16 compute mode (\`computeDtype: 'bf16'\`, bf16 GEMM path ${gemmBf16Path()}), encode tokens/s, ours bf16 (ours bf16 / ours f32):\n\n`;
md += '| d_in | latents | k | tokens | encode bf16 (/ f32) |\n|---:|---:|---:|---:|---:|\n';
for (const r of rows) md += `| ${r.d} | ${r.m} | ${r.k} | ${r.n} | ${fmt(r.encodeBf16)} (${(r.encodeBf16 / r.encode.ours).toFixed(2)}x) |\n`;
md += '\nCPU seconds per train step (all threads; wall time on an idle machine is about this / threads): ' + rows.map((r) => `${r.d}x${r.m}: ${r.trainCpuSeconds.toFixed(2)} s`).join(', ') + '\n';
console.log(md);
const out = join(dirname(fileURLToPath(import.meta.url)), 'out');
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'sae.md'), md);
writeFileSync(join(out, 'sae.json'), JSON.stringify({ threads, reps, smoke, sparsify: refLibrary ?? null, refNote, rows }, null, 2));
