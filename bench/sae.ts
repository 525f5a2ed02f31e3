// Sparse coder throughput on CPU, next to sparsify's figures (fixtures/baselines.md: torch 2.13
// CPU, 2 threads, same shapes). Standalone:
//   node --conditions=sparsify-source --import tsx bench/sae.ts [--reps N] [--threads T] [--only 128]
// Prints a markdown table and writes bench/out/sae.md and bench/out/sae.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { createOptimizer, nativePath, Rng, setNumThreads, SparseCoder, Tensor } from '@sparsify/core';
import { kernelsLine } from './lib/machine.js';

const args = process.argv.slice(2);
const arg = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const reps = Number(arg('reps', '3'));
const threads = Number(arg('threads', process.env.SPARSIFY_BENCH_THREADS ?? '2'));
const only = arg('only', '');
setNumThreads(threads);

// sparsify's tokens/s (baselines.md): encode, forward, train step (auxk_alpha 0), train step (auxk 1/32, 10% dead)
const SHAPES = [
  { d: 768, m: 24576, k: 32, n: 4096, base: { encode: 2876, forward: 2275, train: 1368, trainAuxk: 960 } },
  { d: 512, m: 16384, k: 32, n: 4096, base: { encode: 4752, forward: 4376, train: 2829, trainAuxk: 1749 } },
  { d: 128, m: 4096, k: 16, n: 8192, base: { encode: 32574, forward: 28090, train: 21052, trainAuxk: 11327 } },
].filter((s) => !only || String(s.d) === only);

// Median wall seconds; also records the process CPU seconds per call (cpu[label]).
const cpu: Record<string, number> = {};
async function median(fn: () => Promise<void>, label = ''): Promise<number> {
  await fn(); // warm-up
  const t: number[] = [];
  const c0 = process.cpuUsage();
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    t.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  const c = process.cpuUsage(c0);
  if (label) cpu[label] = (c.user + c.system) / 1e6 / reps;
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)];
}

interface Row { trainCpuSeconds: number; d: number; m: number; k: number; n: number; encode: number; decode: number; forward: number; train: number; trainAuxk: number; base: (typeof SHAPES)[number]['base'] }
const rows: Row[] = [];
const loadStart = loadavg()[0];
for (const s of SHAPES) {
  const coder = await SparseCoder.create(s.d, { numLatents: s.m, k: s.k }, { seed: 0 });
  const rng = new Rng(1);
  const x = Tensor.from(Float32Array.from({ length: s.n * s.d }, () => rng.normal()), [s.n, s.d]);
  await coder.initBiasesFromBatch(x);
  const enc = await coder.encode(x);
  const tEnc = await median(async () => {
    const r = await coder.encode(x);
    r.topActs.dispose();
    r.topIndices.dispose();
  });
  const tDec = await median(async () => (await coder.decode(enc.topActs, enc.topIndices)).dispose());
  const tFwd = await median(async () => {
    const r = await coder.forward(x);
    r.saeOut.dispose();
  });
  const opt = createOptimizer('signum', [coder]);
  const didFire = Tensor.zeros([s.m], { dtype: 'int32' });
  const tTrain = await median(async () => {
    await coder.forwardBackward(x, { auxkAlpha: 0, didFire });
    await opt.step();
  }, `train${s.d}`);
  const dead = Uint8Array.from({ length: s.m }, (_, i) => (i % 10 === 0 ? 1 : 0));
  const tAux = await median(async () => {
    await coder.forwardBackward(x, { auxkAlpha: 1 / 32, deadMask: dead, didFire });
    await opt.step();
  });
  rows.push({ ...s, trainCpuSeconds: cpu[`train${s.d}`], encode: s.n / tEnc, decode: s.n / tDec, forward: s.n / tFwd, train: s.n / tTrain, trainAuxk: s.n / tAux });
  opt.dispose();
  coder.dispose();
  console.error(`done ${s.d}x${s.m}`);
}

const fmt = (v: number) => Math.round(v).toLocaleString('en-US');
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
let md = `## Sparse coder throughput (tokens/s, ${threads} threads, median of ${reps})\n\n`;
md += `${kernelsLine()}.\n\n`;
md += `addon: \`${nativePath()}\`; 1-min load average ${loadStart.toFixed(1)} at start, ${loadavg()[0].toFixed(1)} at end (2-core machine shared with other jobs: numbers are pessimistic).\n\n`;
md += 'Train step = forwardBackward (decoder renormalisation, encode, decode, losses, backward) + signum optimizer step (projection, update, zero grads); sparsify = baselines.md (torch 2.13 CPU, same shapes, 2 threads).\n\n';
md += '| d_in | latents | k | tokens | encode (sparsify) | decode | forward (sparsify) | train step signum (sparsify) | train step AuxK 10% dead (sparsify) |\n';
md += '|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n';
for (const r of rows)
  md += `| ${r.d} | ${r.m} | ${r.k} | ${r.n} | ${fmt(r.encode)} (${fmt(r.base.encode)}, ${ratio(r.encode, r.base.encode)}) | ${fmt(r.decode)} | ${fmt(r.forward)} (${fmt(r.base.forward)}, ${ratio(r.forward, r.base.forward)}) | ${fmt(r.train)} (${fmt(r.base.train)}, ${ratio(r.train, r.base.train)}) | ${fmt(r.trainAuxk)} (${fmt(r.base.trainAuxk)}, ${ratio(r.trainAuxk, r.base.trainAuxk)}) |\n`;
md += '\nCPU seconds per train step (all threads; wall time on an idle machine is about this / threads): ' + rows.map((r) => `${r.d}x${r.m}: ${r.trainCpuSeconds.toFixed(2)} s`).join(', ') + '\n';
console.log(md);
const out = join(dirname(fileURLToPath(import.meta.url)), 'out');
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'sae.md'), md);
writeFileSync(join(out, 'sae.json'), JSON.stringify({ threads, reps, rows }, null, 2));
