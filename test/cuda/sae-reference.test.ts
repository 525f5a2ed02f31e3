// The float64 reference of the resident training step (test/cuda/reference.ts) is the oracle of
// sae-train.test.ts; here its gradients are checked against central finite differences of
// L = fvu + alpha·auxk with sparsify's stop-gradients (top-k selection, AuxK values and e fixed).
// Runs without a GPU.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { saeOps, Tensor } from '@sparsify/core';

import { preActs, randn, referenceSaeStep, rng, topkRows, worst, type SaeParams64 } from './reference.js';

for (const withBDec of [false, true]) test(`SAE step reference gradients match finite differences (AuxK e_hat ${withBDec ? 'with' : 'without'} b_dec)`, () => {
  const r = rng(7);
  const N = 12, D = 8, M = 40, k = 3, alpha = 0.5;
  const wEnc = randn(M * D, r, 1 / Math.sqrt(D)), bEnc = randn(M, r, 0.05), bDec = randn(D, r, 0.1);
  const wDec = Float64Array.from(wEnc);
  for (let m = 0; m < M; m++) { let ss = 0; for (let d = 0; d < D; d++) ss += wDec[m*D+d]**2; for (let d = 0; d < D; d++) wDec[m*D+d] /= Math.sqrt(ss) + 1.1920928955078125e-7; }
  const x = randn(N * D, r);
  const dead = new Int32Array(M).map(() => (r() < 0.4 ? 1 : 0));
  const P: SaeParams64 = { wEnc: Float64Array.from(wEnc), bEnc: Float64Array.from(bEnc), wDec, bDec: Float64Array.from(bDec) };
  const ref = referenceSaeStep(P, x, N, D, M, k, dead, alpha, 'float32', withBDec);
  const preF = preActs(x, Float32Array.from(bDec), Float32Array.from(wEnc), Float32Array.from(bEnc), N, D, M, 'float32');
  const top = topkRows(preF, N, M, k);
  const nd = dead.reduce((a, v) => a + v, 0), kAux = Math.min(D / 2, nd), scale = Math.min(nd / (D / 2), 1);
  const aux = topkRows(preF, N, M, kAux, (m) => dead[m] !== 0);
  const e0 = new Float64Array(N * D);
  for (let n = 0; n < N; n++) for (let d = 0; d < D; d++) { let s = bDec[d]; for (let j = 0; j < k; j++) s += top.v[n*k+j] * wDec[top.idx[n*k+j]*D+d]; e0[n*D+d] = x[n*D+d] - s; }
  function loss(p: SaeParams64) {
    const pre = new Float64Array(N * M);
    for (let n = 0; n < N; n++) for (let m = 0; m < M; m++) { let s = p.bEnc[m]; for (let d = 0; d < D; d++) s += (x[n*D+d] - p.bDec[d]) * p.wEnc[m*D+d]; pre[n*M+m] = s; }
    const mean = new Float64Array(D); for (let i = 0; i < N*D; i++) mean[i % D] += x[i] / N;
    let tv = 0, sse = 0, ax = 0;
    for (let i = 0; i < N*D; i++) tv += (x[i] - mean[i % D])**2;
    for (let n = 0; n < N; n++) for (let d = 0; d < D; d++) {
      let s = p.bDec[d]; for (let j = 0; j < k; j++) { const m = top.idx[n*k+j]; s += pre[n*M+m] * p.wDec[m*D+d]; }
      sse += (x[n*D+d] - s)**2;
      let eh = withBDec ? p.bDec[d] : 0; for (let j = 0; j < kAux; j++) eh += aux.v[n*kAux+j] * p.wDec[aux.idx[n*kAux+j]*D+d];
      ax += (eh - e0[n*D+d])**2;
    }
    return sse / tv + alpha * scale * ax / tv;
  }
  assert.deepEqual([...top.idx], [...ref.idx]);
  for (const name of ['wEnc', 'bEnc', 'wDec', 'bDec'] as const) {
    const arr = P[name], g = ref.g[name];
    let num = 0, den = 0;
    for (let i = 0; i < arr.length; i++) {
      const h = 1e-6, old = arr[i];
      arr[i] = old + h; const lp = loss(P); arr[i] = old - h; const lm = loss(P); arr[i] = old;
      const fdv = (lp - lm) / (2 * h);
      num += (fdv - g[i])**2; den += fdv**2;
    }
    assert.ok(Math.sqrt(num / den) < 1e-5, `${name}: reference gradient vs finite differences ${Math.sqrt(num / den)}`);
  }
});

// The W_skip and Multi-TopK terms of the reference (the oracle of the GPU tests for them) against
// the CPU saeStep, which defines the math: same losses, 4k selection and gradients.
test('SAE step reference with W_skip and Multi-TopK matches the CPU saeStep', async () => {
  const r = rng(11);
  const N = 16, D = 12, M = 96, k = 3, alpha = 1 / 32;
  const wEnc = randn(M * D, r, 1 / Math.sqrt(D)), bEnc = randn(M, r, 0.05), bDec = randn(D, r, 0.1), wSkip = randn(D * D, r, 0.2);
  const wDec = Float32Array.from(wEnc);
  for (let m = 0; m < M; m++) { let ss = 0; for (let d = 0; d < D; d++) ss += wDec[m*D+d]**2; const den = Math.fround(Math.sqrt(ss)) + 1.1920928955078125e-7; for (let d = 0; d < D; d++) wDec[m*D+d] = Math.fround(wDec[m*D+d] / den); }
  const x = randn(N * D, r);
  const dead = new Int32Array(M).map(() => (r() < 0.3 ? 1 : 0));
  const P: SaeParams64 = { wEnc: Float64Array.from(wEnc), bEnc: Float64Array.from(bEnc), wDec: Float64Array.from(wDec), bDec: Float64Array.from(bDec) };
  const ref = referenceSaeStep(P, x, N, D, M, k, dead, alpha, 'float32', false, { wSkip: Float64Array.from(wSkip), multiTopk: true });
  const T = (a: Float32Array, s: number[]) => Tensor.from(a, s);
  const w = { encW: T(wEnc, [M, D]), encB: T(bEnc, [M]), W_dec: T(wDec, [M, D]), b_dec: T(bDec, [D]), W_skip: T(wSkip, [D, D]) };
  const g = { encW: Tensor.zeros([M, D]), encB: Tensor.zeros([M]), W_dec: Tensor.zeros([M, D]), b_dec: Tensor.zeros([D]), W_skip: Tensor.zeros([D, D]) };
  const cpu = await saeOps.saeStep(w, g, T(x, [N, D]), undefined, { k, groupmax: false, transcode: false, multiTopk: true },
    { deadMask: Uint8Array.from(dead), auxkAlpha: alpha, lossScale: 1, normalizeDecoder: false, outputs: true });
  const close = (a: number, b: number) => Math.abs(a - b) <= 1e-5 * Math.abs(b);
  assert.ok(close(cpu.fvu, ref.fvu), `fvu ${cpu.fvu} vs ${ref.fvu}`);
  assert.ok(close(cpu.auxkLoss, ref.auxk), `auxk ${cpu.auxkLoss} vs ${ref.auxk}`);
  assert.ok(ref.multiTopkFvu > 0 && close(cpu.multiTopkFvu, ref.multiTopkFvu), `multi_topk_fvu ${cpu.multiTopkFvu} vs ${ref.multiTopkFvu}`);
  // The CPU returns the 4k selection (sorted, descending) with Multi-TopK.
  assert.deepEqual([...cpu.latentIndices!.toInt32Array()], [...ref.idx4!]);
  for (const [name, want] of [['encW', ref.g.wEnc], ['encB', ref.g.bEnc], ['W_dec', ref.g.wDec], ['b_dec', ref.g.bDec], ['W_skip', ref.wSkipGrad!]] as const) {
    const have = g[name].toFloat32Array();
    const wr = worst(have, want, 1e-4, 1e-5 * Math.max(...Array.from(want, Math.abs)));
    assert.ok(wr.ratio <= 1, `grad ${name}[${wr.at}]: cpu ${have[wr.at]} vs reference ${want[wr.at]}`);
  }
});
