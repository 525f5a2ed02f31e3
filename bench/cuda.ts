/**
 * CUDA benchmarks (run on a GPU machine; scripts/gpu-check.sh runs this):
 *   node --conditions=sparsify-source --import tsx bench/cuda.ts [--json out.json] [--quick]
 * 1. Roofline first: device-to-device copy bandwidth (bytes read + written) and the bf16
 *    tensor-core rate of this project's own GEMM (mma.sync, or wgmma on sm_90) on a large square problem (no cuBLAS in
 *    the toolkit, so it is the ceiling we can measure, not the chip's datasheet peak).
 * 2. Fused TopK encoder (GEMM + top-k epilogue + merge) at N=16384, D=4096, M=131072, k=32 as a
 *    percentage of (1).
 * 2b. Inference encode with the encoder weights resident on the device, tokens/s.
 * 3. One SAE training step (encode, decode, decode/encoder backward, projection, 2x Adam, renorm)
 *    through the host-tensor API, tokens/s, transfers included.
 * 3b. The same step with the training state resident on the device (CudaSaeState) and x a device
 *     tensor (as the GPU model forward's captures are), tokens/s.
 * 4. The transformer forward on the GPU (loadModel(..., {device: 'cuda'})): a GPT-2-small-shaped
 *    model with random weights (bench/lib/gpt2-checkpoint.ts), batch 8 x 256 (quick: 4 x 256),
 *    capturing one hookpoint (h.6: blocks 0-6 run) and all 12 blocks, tokens/s (host tokens in,
 *    device activations out). transformers on the same GPU: bench/ref/torch_gpt2_forward.py
 *    (scripts/gpu-check.sh runs it when PyTorch with CUDA is importable).
 * Without the CUDA build or a device it prints why and exits 0.
 */
import { writeFileSync } from 'node:fs';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

import { tmpdir } from 'node:os';

import { Tensor, loadModel, native, nativePath } from '@sparsify/core';
import { GPT2_SMALL, makeGpt2Checkpoint } from './lib/gpt2-checkpoint.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const jsonOut = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined;
const quick = args.includes('--quick');
const cudaPath = join(root, 'native', 'build-cuda', 'Release', 'sparsify.node');

// Without a GPU it prints a markdown section (bench/run.ts puts it in RESULTS.md) saying so.
function skip(reason: string): never {
  const short = /no CUDA device/.test(reason) ? 'no CUDA device' : 'no CUDA build';
  console.log(`## GPU (not run: ${short})\n\nbench/cuda.ts skipped: ${reason}.\n\n` +
    'The GPU benchmarks and the comparison against Python sparsify on the same GPU (resident training step ' +
    "tokens/s vs sparsify's trainer step, fused encoder as % of torch's bf16 matmul rate, roofline) are ready: " +
    '`scripts/gpu-check.sh` on a GPU machine (bench/README.md, "GPU comparison"). This run produced no GPU numbers.');
  if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ skipped: reason }, null, 2) + '\n');
  process.exit(0);
}

if (!existsSync(cudaPath)) skip(`no CUDA build at ${cudaPath} (node scripts/build-native.mjs --cuda)`);
const probe = createRequire(import.meta.url)(cudaPath).cudaProbe();
if (probe.devices === 0) skip(`no CUDA device (${probe.error ?? 'none found'})`);
const addon = native();
if (!addon.buildInfo().cuda) skip(`the loaded addon is not the CUDA build (${nativePath()})`);

const rows: [string, string][] = [];
const results: Record<string, unknown> = { device: probe };
console.log(`device: ${probe.name} (cc ${probe.computeCapability}, driver ${probe.driverVersion}, runtime ${probe.runtimeVersion})`);

// 1. Roofline.
const copyBytes = 2 ** 30;
const copyMs: number = await addon.testing.cudaBench('copy', { bytes: copyBytes, iters: 20 });
const bandwidth = (2 * copyBytes) / (copyMs * 1e-3) / 1e9;
rows.push(['copy bandwidth (read+write)', `${bandwidth.toFixed(0)} GB/s`]);
const S = quick ? 4096 : 8192;
const gemmMs: number = await addon.testing.cudaBench('gemm', { m: S, n: S, k: S, iters: 10 });
const mmaRate = (2 * S ** 3) / (gemmMs * 1e-3) / 1e12;
// The main loop the GEMM and the encoder use on this device (wgmma on sm_90 after its self-check).
const gemmPath = addon.testing.cudaGemmPath() as { wgmma: boolean; why: string };
rows.push([`bf16 GEMM ${S}^3 (own kernel: ${gemmPath.why})`, `${mmaRate.toFixed(0)} TFLOP/s (${gemmMs.toFixed(2)} ms)`]);
results.roofline = { copyGBs: bandwidth, gemmTflops: mmaRate, gemmSize: S, gemmPath };

// 2. Fused encoder.
const enc = quick ? { n: 4096, d: 2048, m: 32768, k: 32 } : { n: 16384, d: 4096, m: 131072, k: 32 };
const encMs: number = await addon.testing.cudaBench('encode', { ...enc, iters: 3 });
const encFlops = (2 * enc.n * enc.d * enc.m) / (encMs * 1e-3) / 1e12;
rows.push([`fused TopK encode N=${enc.n} D=${enc.d} M=${enc.m} k=${enc.k}`,
  `${encMs.toFixed(1)} ms, ${encFlops.toFixed(0)} TFLOP/s = ${((100 * encFlops) / mmaRate).toFixed(0)}% of the GEMM ceiling`]);
results.encode = { ...enc, ms: encMs, tflops: encFlops, pctOfGemm: (100 * encFlops) / mmaRate };

// 2b. Inference encode with resident weights (x crosses PCIe, the weights do not).
{
  const n = quick ? 2048 : 8192, d = 2048, m = 32768, kk = 32;
  const rnd = (len: number, sc: number) => Float32Array.from({ length: len }, () => (Math.random() - 0.5) * sc);
  const enc = await addon.cudaEncoderCreate(Tensor.from(rnd(m * d, 0.05), [m, d]).handle, Tensor.from(rnd(m, 0.1), [m]).handle,
    Tensor.from(rnd(d, 0.1), [d]).handle);
  const xs = Tensor.from(rnd(n * d, 2), [n, d]);
  await enc.encode(xs.handle, { k: kk });
  const t1 = performance.now(), reps = 5;
  for (let i = 0; i < reps; i++) await enc.encode(xs.handle, { k: kk });
  const ms = (performance.now() - t1) / reps;
  rows.push([`resident encoder N=${n} D=${d} M=${m} k=${kk} (host x in, top-k out)`, `${ms.toFixed(1)} ms, ${((n * 1000) / ms).toFixed(0)} tokens/s`]);
  results.residentEncode = { n, d, m, k: kk, ms, tokensPerSecond: (n * 1000) / ms };
  enc.dispose();
}

// 3. Training step through the host-tensor API (includes host<->device transfers per op).
const N = quick ? 1024 : 4096, D = 768, M = 24576, k = 32;
const rnd = (n: number, s: number) => Float32Array.from({ length: n }, () => (Math.random() - 0.5) * s);
const x = Tensor.from(rnd(N * D, 2), [N, D]);
let W = Tensor.from(rnd(M * D, 2 / Math.sqrt(D)), [M, D]);
let Wd = new Tensor(await addon.testing.cudaNormalizeRows(W.handle));
const b = Tensor.from(new Float32Array(M), [M]), bDec = Tensor.from(new Float32Array(D), [D]);
let m1 = Tensor.zeros([M, D]), v1 = Tensor.zeros([M, D]), m2 = Tensor.zeros([M, D]), v2 = Tensor.zeros([M, D]);
const step = async (t: number) => {
  const e = await addon.testing.cudaTopkEncode(x.handle, W.handle, b.handle, { k, bDec: bDec.handle });
  const y = new Tensor(await addon.testing.cudaDecode(e.acts, e.indices, Wd.handle, bDec.handle));
  const yv = y.toFloat32Array(), xv = x.toFloat32Array(), g = new Float32Array(yv.length);
  for (let i = 0; i < g.length; i++) g[i] = (2 * (yv[i] - xv[i])) / g.length;  // d(mse)/dy
  const G = Tensor.from(g, [N, D]);
  const dg = await addon.testing.cudaDecodeBackward(G.handle, e.acts, e.indices, Wd.handle);
  const eg = await addon.testing.cudaEncoderBackward(dg.gradActs, e.indices, x.handle, W.handle);
  const pg = new Tensor(await addon.testing.cudaProjectGrad(dg.gradWDec, Wd.handle));
  const a = await addon.testing.cudaAdamStep(W.handle, eg.gradWEnc, m1.handle, v1.handle, { lr: 1e-4, step: t });
  [W, m1, v1] = [new Tensor(a.param), new Tensor(a.m), new Tensor(a.v)];
  const ad = await addon.testing.cudaAdamStep(Wd.handle, pg.handle, m2.handle, v2.handle, { lr: 1e-4, step: t });
  [m2, v2] = [new Tensor(ad.m), new Tensor(ad.v)];
  Wd = new Tensor(await addon.testing.cudaNormalizeRows(ad.param));
};
await step(1);
const t0 = performance.now();
const steps = quick ? 2 : 5;
for (let t = 2; t < 2 + steps; t++) await step(t);
const stepMs = (performance.now() - t0) / steps;
rows.push([`SAE train step N=${N} D=${D} M=${M} k=${k} (host API)`, `${stepMs.toFixed(0)} ms, ${((N * 1000) / stepMs).toFixed(0)} tokens/s`]);
results.trainStep = { N, D, M, k, ms: stepMs, tokensPerSecond: (N * 1000) / stepMs };

// 3b. Training step with the state resident on the device (x in; losses + indices out).
{
  const n = quick ? 2048 : 8192, d = quick ? 1024 : 4096, m = quick ? 16384 : 131072, kk = 32;
  const rnd = (len: number, sc: number) => {
    const a = new Float32Array(len);
    for (let i = 0; i < len; i++) a[i] = (Math.random() - 0.5) * sc;
    return a;
  };
  const we = rnd(m * d, 2 / Math.sqrt(d));
  const sae = await addon.cudaSaeCreate({ wEnc: Tensor.from(we, [m, d]).handle, bEnc: Tensor.zeros([m]).handle,
    wDec: Tensor.from(we, [m, d]).handle, bDec: Tensor.zeros([d]).handle }, { k: kk });
  // x already on the device, as the trainer's captures are when the model runs on the GPU.
  const xs = Tensor.from(rnd(n * d, 2), [n, d], { device: 'cuda' });
  const dead = Tensor.from(new Int32Array(m).map((_, i) => (i % 10 === 0 ? 1 : 0)), [m]);
  const once = async (t: number) => {
    await sae.forwardBackward(xs.handle, { deadMask: dead.handle, auxkAlpha: 1 / 32 });
    await sae.apply({ optimizer: 'adam', lr: 1e-4, step: t });
  };
  await once(1);
  const t1 = performance.now(), reps = quick ? 2 : 5;
  for (let t = 2; t < 2 + reps; t++) await once(t);
  const ms = (performance.now() - t1) / reps;
  rows.push([`resident SAE train step N=${n} D=${d} M=${m} k=${kk} (+AuxK, Adam)`, `${ms.toFixed(0)} ms, ${((n * 1000) / ms).toFixed(0)} tokens/s`]);
  results.residentTrainStep = { n, d, m, k: kk, ms, tokensPerSecond: (n * 1000) / ms };
  sae.dispose();
}

// 4. Transformer forward on the GPU (weights resident; the forward is one native call).
{
  const dir = join(tmpdir(), 'sparsify-bench-gpt2-small');
  makeGpt2Checkpoint(dir);
  const B = quick ? 4 : 8, T = 256;
  const model = await loadModel(dir, { device: 'cuda' });
  const ids = new Int32Array(B * T);
  for (let i = 0; i < ids.length; i++) ids[i] = (i * 7919 + 13) % GPT2_SMALL.vocab_size;
  const tokens = Tensor.from(ids, [B, T]);
  const fwd: Record<string, unknown> = { batch: B, seq: T, layers: GPT2_SMALL.n_layer, hidden: GPT2_SMALL.n_embd };
  const cases: [string, string, string[]][] = [
    ['oneHookpoint', 'h.6 (stops after block 6)', ['h.6']],
    ['allBlocks', 'all 12 blocks', model.layerNames()],
  ];
  for (const [key, label, hookpoints] of cases) {
    const run = async () => {
      const t0 = performance.now();
      const out = await model.forward(tokens, { hookpoints });
      const ms = performance.now() - t0;
      for (const t of out.captured.values()) t.dispose();
      return ms;
    };
    await run(); // warm-up
    const times: number[] = [];
    for (let i = 0; i < (quick ? 5 : 20); i++) times.push(await run());
    times.sort((a, c) => a - c);
    const ms = times[Math.floor(times.length / 2)];
    rows.push([`GPT-2-small forward ${B}x${T}, capture ${label}`, `${ms.toFixed(1)} ms, ${((B * T * 1000) / ms).toFixed(0)} tokens/s`]);
    fwd[key] = { hookpoints, ms, tokensPerSecond: (B * T * 1000) / ms };
  }
  results.modelForward = fwd;
  model.dispose();
}

const w = Math.max(...rows.map((r) => r[0].length));
for (const [a, b2] of rows) console.log(`${a.padEnd(w)}  ${b2}`);
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(results, null, 2) + '\n');
