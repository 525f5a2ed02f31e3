#!/usr/bin/env node
// Repeats one SAE training step (forwardBackward + signum step) at a bench/sae.ts shape, for a
// profiler to sample, e.g.
//   perf record -F 499 -g -o /tmp/sae.perf -- node scripts/profile-sae-step.mjs 768 24576 32 4096 5 [auxk]
//   perf report -i /tmp/sae.perf --no-children --sort symbol
// Arguments: d_in, latents, k, tokens, steps, and `auxk` for AuxK (alpha 1/32, 10% dead latents).
// Uses the built packages (npm install builds them); SPARSIFY_GEMM picks the kernel set.
import { createOptimizer, gemmSummary, Rng, setNumThreads, SparseCoder, Tensor } from '@sparsify/core';

const [d, m, k, n, steps] = process.argv.slice(2, 7).map(Number);
const auxk = process.argv[7] === 'auxk';
if (![d, m, k, n, steps].every((v) => Number.isInteger(v) && v > 0)) {
  console.error('usage: node scripts/profile-sae-step.mjs d_in latents k tokens steps [auxk]');
  process.exit(2);
}
setNumThreads(Number(process.env.SPARSIFY_BENCH_THREADS ?? '2'));
const coder = await SparseCoder.create(d, { numLatents: m, k }, { seed: 0 });
const rng = new Rng(1);
const x = Tensor.from(Float32Array.from({ length: n * d }, () => rng.normal()), [n, d]);
await coder.initBiasesFromBatch(x);
const opt = createOptimizer('signum', [coder]);
const didFire = Tensor.zeros([m], { dtype: 'int32' });
const dead = Uint8Array.from({ length: m }, (_, i) => (i % 10 === 0 ? 1 : 0));
console.error(`kernels: ${gemmSummary()}`);
for (let s = 0; s < steps; s++) {
  const t0 = performance.now();
  await coder.forwardBackward(x, auxk ? { auxkAlpha: 1 / 32, deadMask: dead, didFire } : { auxkAlpha: 0, didFire });
  await opt.step();
  console.error(`step ${s}: ${((performance.now() - t0) / 1000).toFixed(2)} s`);
}
