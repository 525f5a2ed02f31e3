// CUDA kernels vs float64 references (test/cuda/reference.ts) and the CPU matmul reference, on
// fresh random inputs (seed printed; SPARSIFY_TEST_SEED=... reproduces). Skipped, with the
// reason, when the CUDA build is missing or no device is present.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Tensor, matmulReference } from '@sparsify/core';

import { cudaAddon } from './cuda-env.js';
import {
  decodeRef, groupMaxRows, lerp, matmulNT, preActs, randn, relErr, rng, roundTo, scatterRows, topkRows, worst,
} from './reference.js';

const { addon, skip } = cudaAddon();
const opts = { skip: skip ?? false };
const seed = Number(process.env.SPARSIFY_TEST_SEED ?? Math.floor(Math.random() * 1e9));
const tag = `(seed ${seed})`;
const T = (a: Float32Array | Int32Array, shape: number[], dtype?: 'float32' | 'bfloat16' | 'float16' | 'int32') =>
  Tensor.from(a as Float32Array, shape, dtype ? { dtype } : {});
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const out = (h: any) => new Tensor(h);
const f32 = (h: unknown) => out(h).toFloat32Array();
const i32 = (h: unknown) => out(h).toInt32Array();

function checkClose(name: string, got: ArrayLike<number>, ref: ArrayLike<number>, rtol: number, atol: number) {
  const w = worst(got, ref, rtol, atol);
  assert.ok(w.ratio <= 1, `${name}: element ${w.at}: got ${got[w.at]}, want ${ref[w.at]} (rtol ${rtol}, atol ${atol}) ${tag}`);
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** Checks a TopK-like selection: each chosen (value, index) is consistent with the reference pre-activations. */
function checkSelection(name: string, acts: Float32Array, idx: Int32Array, pre: Float64Array, refV: Float64Array,
  N: number, M: number, k: number, allowed?: (m: number) => boolean) {
  const tol = 2e-5 * Math.max(1, maxAbs(refV));
  for (let n = 0; n < N; n++) {
    const seen = new Set<number>();
    for (let j = 0; j < k; j++) {
      const m = idx[n * k + j], v = acts[n * k + j];
      assert.ok(m >= 0 && m < M && !seen.has(m), `${name}: row ${n} slot ${j}: bad or repeated index ${m} ${tag}`);
      assert.ok(!allowed || allowed(m), `${name}: row ${n}: latent ${m} is not eligible ${tag}`);
      seen.add(m);
      assert.ok(Math.abs(v - pre[n * M + m]) <= tol, `${name}: row ${n}: value ${v} != pre[${m}] = ${pre[n * M + m]} ${tag}`);
      // Same rank, same value (the sets may differ only among near-ties).
      assert.ok(Math.abs(v - refV[n * k + j]) <= tol, `${name}: row ${n} rank ${j}: ${v} vs reference ${refV[n * k + j]} ${tag}`);
      if (j > 0) assert.ok(acts[n * k + j - 1] >= v, `${name}: row ${n} is not sorted descending ${tag}`);
    }
  }
}

test('tensor-core matmul matches the float64 and CPU references (bf16, f16, both B layouts)', opts, async () => {
  const r = rng(seed);
  for (const [M, N, K] of [[77, 203, 100], [300, 260, 512], [1, 1, 8]]) {
    const a = randn(M * K, r), b = randn(N * K, r), bias = randn(N, r);
    for (const compute of ['bfloat16', 'float16'] as const) {
      const ar = roundTo(a, compute), br = roundTo(b, compute);
      const ref = matmulNT(ar, br, M, N, K, bias);
      const A = T(a, [M, K]), Bt = T(b, [N, K]), bias_ = T(bias, [N]);
      const got = f32(await addon!.testing.cudaMatmul(A.handle, Bt.handle, { bTrans: true, bias: bias_.handle, computeDtype: compute }));
      checkClose(`matmul ${compute} ${M}x${N}x${K}`, got, ref, 1e-4, 1e-4 * Math.sqrt(K));
      // Same numbers as the CPU reference GEMM on the rounded operands.
      const cpu = (await matmulReference(T(ar, [M, K]), T(br, [N, K]), { bTrans: true, bias: bias_ })).toFloat32Array();
      assert.ok(relErr(got, cpu) < 1e-5, `matmul vs CPU reference: ${relErr(got, cpu)} ${tag}`);
      // B stored [K, N] (Conv1D layout).
      const bKN = new Float32Array(K * N);
      for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) bKN[k * N + n] = b[n * K + k];
      const got2 = f32(await addon!.testing.cudaMatmul(A.handle, T(bKN, [K, N]).handle, { bTrans: false, bias: bias_.handle, computeDtype: compute }));
      assert.deepEqual(got2, got, `matmul [K,N] layout differs from [N,K] ${tag}`);
    }
  }
});

test('fused TopK encoder matches the reference, the fallback and every split/tile edge', opts, async () => {
  const r = rng(seed + 1);
  const maxK = addon!.testing.cudaFusedTopkMaxK() as number;
  for (const [N, D, M, k] of [[100, 96, 1000, 16], [40, 64, 4096, 32], [300, 130, 777, 7], [5, 32, 2048, Math.min(maxK + 8, 2048)]]) {
    const x = randn(N * D, r), W = randn(M * D, r, 1 / Math.sqrt(D)), b = randn(M, r, 0.1), bDec = randn(D, r, 0.5);
    const pre = preActs(x, bDec, W, b, N, D, M, 'bfloat16');
    const ref = topkRows(pre, N, M, k);
    const args = [T(x, [N, D]).handle, T(W, [M, D]).handle, T(b, [M]).handle] as const;
    const res = await addon!.testing.cudaTopkEncode(...args, { k, bDec: T(bDec, [D]).handle });
    assert.equal(res.fused, k <= maxK, `fused flag for k=${k} (max ${maxK})`);
    const acts = f32(res.acts), idx = i32(res.indices);
    checkSelection(`topk N=${N} D=${D} M=${M} k=${k}`, acts, idx, pre, ref.v, N, M, k);
    assert.equal(res.preActs, undefined, 'pre-activations only when asked for');
    // The chunked fallback runs the same arithmetic: identical output; so do the dense pre-activations.
    const fb = await addon!.testing.cudaTopkEncode(...args, { k, bDec: T(bDec, [D]).handle, forceUnfused: true, preActs: true });
    assert.equal(fb.fused, false);
    assert.deepEqual(f32(fb.acts), acts, `fallback values differ ${tag}`);
    assert.deepEqual(i32(fb.indices), idx, `fallback indices differ ${tag}`);
    const densePre = f32(fb.preActs);
    assert.deepEqual(out(fb.preActs).shape, [N, M]);
    const preTol = 2e-5 * Math.max(1, maxAbs(pre));
    for (let i = 0; i < N * M; i++) assert.ok(Math.abs(densePre[i] - pre[i]) <= preTol, `pre_acts[${i}] ${densePre[i]} vs ${pre[i]} ${tag}`);
    for (let i = 0; i < N * k; i++) assert.equal(acts[i], densePre[Math.floor(i / k) * M + idx[i]], `selected value ${i} is not its pre-activation ${tag}`);
    // Weights kept on the device: same arithmetic, same output.
    const enc = await addon!.cudaEncoderCreate(args[1], args[2], T(bDec, [D]).handle);
    assert.equal(enc.numLatents, M);
    const rr = await enc.encode(args[0], { k, preActs: true });
    assert.deepEqual(f32(rr.acts), acts, `resident encoder values differ ${tag}`);
    assert.deepEqual(i32(rr.indices), idx, `resident encoder indices differ ${tag}`);
    assert.deepEqual(f32(rr.preActs!), densePre, `resident encoder pre-activations differ ${tag}`);
    // A method on another object is an error (the class's receiver check), not a crash.
    assert.throws(() => (enc.encode as any).call({}, args[0], { k }), TypeError);
    enc.dispose();
    assert.throws(() => enc.encode(args[0], { k }), { code: 'ERR_SPARSIFY_DISPOSED' });
  }
  // Transcoder-style (no b_dec), f16 compute, and rows with fewer than k positive values (zeros selected).
  const N = 20, D = 64, M = 512, k = 24;
  const x = randn(N * D, r), W = randn(M * D, r, 1 / Math.sqrt(D)), b = new Float32Array(M).fill(-3);
  const pre = preActs(x, undefined, W, b, N, D, M, 'float16');
  const res = await addon!.testing.cudaTopkEncode(T(x, [N, D]).handle, T(W, [M, D]).handle, T(b, [M]).handle, { k, computeDtype: 'float16' });
  checkSelection('topk f16 sparse rows', f32(res.acts), i32(res.indices), pre, topkRows(pre, N, M, k).v, N, M, k);
});

test('GroupMax encoder matches the reference (groups inside and across 128-latent tiles)', opts, async () => {
  const r = rng(seed + 2);
  for (const [N, D, M, k] of [[70, 64, 1024, 32], [33, 40, 1536, 6], [9, 32, 300, 100]]) {
    const x = randn(N * D, r), W = randn(M * D, r, 1 / Math.sqrt(D)), b = randn(M, r, 0.1), bDec = randn(D, r, 0.5);
    const pre = preActs(x, bDec, W, b, N, D, M, 'bfloat16');
    const ref = groupMaxRows(pre, N, M, k);
    const res = await addon!.testing.cudaTopkEncode(T(x, [N, D]).handle, T(W, [M, D]).handle, T(b, [M]).handle,
      { k, activation: 'groupmax', bDec: T(bDec, [D]).handle, preActs: true });
    const acts = f32(res.acts), idx = i32(res.indices), G = M / k, tol = 2e-5 * Math.max(1, maxAbs(ref.v));
    const densePre = f32(res.preActs);
    for (let i = 0; i < N * M; i++) assert.ok(Math.abs(densePre[i] - pre[i]) <= tol, `groupmax pre_acts[${i}] ${tag}`);
    for (let i = 0; i < N * k; i++) assert.equal(acts[i], densePre[Math.floor(i / k) * M + idx[i]], `groupmax value ${i} is not its pre-activation ${tag}`);
    for (let n = 0; n < N; n++)
      for (let g = 0; g < k; g++) {
        const m = idx[n * k + g], v = acts[n * k + g];
        assert.ok(m >= g * G && m < (g + 1) * G, `groupmax row ${n} group ${g}: index ${m} outside the group ${tag}`);
        assert.ok(Math.abs(v - ref.v[n * k + g]) <= tol && Math.abs(v - pre[n * M + m]) <= tol,
          `groupmax row ${n} group ${g}: ${v} vs ${ref.v[n * k + g]} ${tag}`);
      }
  }
});

test('AuxK over dead latents in the same pass matches the reference', opts, async () => {
  const r = rng(seed + 3);
  for (const [N, D, M, k, kAux, deadFrac, unfused] of [[50, 64, 1000, 8, 32, 0.3, false], [30, 48, 640, 10, 200, 0.05, false], [30, 48, 640, 10, 24, 0.5, true]] as const) {
    const x = randn(N * D, r), W = randn(M * D, r, 1 / Math.sqrt(D)), b = randn(M, r, 0.1);
    const dead = new Int32Array(M).map(() => (r() < deadFrac ? 1 : 0));
    const numDead = dead.reduce((a, v) => a + v, 0);
    const pre = preActs(x, undefined, W, b, N, D, M, 'bfloat16');
    const res = await addon!.testing.cudaTopkEncode(T(x, [N, D]).handle, T(W, [M, D]).handle, T(b, [M]).handle,
      { k, deadMask: T(dead, [M], 'int32').handle, kAux, forceUnfused: unfused });
    const kEff = Math.min(kAux, numDead);
    assert.deepEqual(out(res.auxActs).shape, [N, kEff]);
    const allowed = (m: number) => dead[m] !== 0;
    const ref = topkRows(pre, N, M, kEff, allowed);
    checkSelection(`auxk dead=${numDead}`, f32(res.auxActs), i32(res.auxIndices), pre, ref.v, N, M, kEff, allowed);
    checkSelection('topk next to auxk', f32(res.acts), i32(res.indices), pre, topkRows(pre, N, M, k).v, N, M, k);
  }
});

// The kernels' tie rule against the CPU encoder (sae_encode.cpp): among equal values the lower
// latent wins. Small-integer inputs make the bf16 GEMM exact, so ties are exact and frequent
// (ReLU zeros and equal positive values) and the chosen indices must equal the reference's.
test('exact ties: fused TopK, the fallback, AuxK and GroupMax keep the lower latent', opts, async () => {
  const r = rng(seed + 8);
  const ints = (n: number, lo: number, hi: number) => Float32Array.from({ length: n }, () => lo + Math.floor(r() * (hi - lo + 1)));
  const maxK = addon!.testing.cudaFusedTopkMaxK() as number;
  for (const [N, D, M, k] of [[37, 32, 1000, 40], [20, 40, 2600, Math.min(64, maxK)], [9, 32, 300, 150]]) {
    const x = ints(N * D, -2, 2), W = ints(M * D, -1, 1), b = ints(M, -3, 0);
    x.fill(0, 0, D);  // row 0: every pre-activation is relu(b) = 0 -> latents 0..k-1
    const dead = new Int32Array(M).map(() => (r() < 0.4 ? 1 : 0));
    const numDead = dead.reduce((a, v) => a + v, 0), kAux = Math.min(50, numDead);
    const pre = preActs(x, undefined, W, b, N, D, M, 'bfloat16');
    const ref = topkRows(pre, N, M, k), refAux = topkRows(pre, N, M, kAux, (m) => dead[m] !== 0);
    const args = [T(x, [N, D]).handle, T(W, [M, D]).handle, T(b, [M]).handle] as const;
    for (const forceUnfused of [false, true]) {
      const res = await addon!.testing.cudaTopkEncode(...args, { k, deadMask: T(dead, [M], 'int32').handle, kAux: 50, forceUnfused });
      const what = `N=${N} M=${M} k=${k} ${res.fused ? 'fused' : 'fallback'}`;
      assert.deepEqual([...i32(res.indices)], [...ref.idx], `${what}: TopK indices differ from the lower-index rule ${tag}`);
      assert.deepEqual([...f32(res.acts)], [...ref.v], `${what}: TopK values ${tag}`);
      assert.deepEqual([...i32(res.auxIndices)], [...refAux.idx], `${what}: AuxK indices differ from the lower-index rule ${tag}`);
    }
    if (M % k === 0) {
      const g = await addon!.testing.cudaTopkEncode(...args, { k, activation: 'groupmax' });
      assert.deepEqual([...i32(g.indices)], [...groupMaxRows(pre, N, M, k).idx], `groupmax ties ${tag}`);
    }
  }
});

test('sparse decode and its backward match the references and are bitwise deterministic', opts, async () => {
  const r = rng(seed + 4);
  const N = 64, k = 12, M = 300, D = 80;
  const acts = randn(N * k, r), idx = new Int32Array(N * k);
  for (let n = 0; n < N; n++) {
    const s = new Set<number>();
    while (s.size < k) s.add(Math.floor(r() * (r() < 0.3 ? 8 : M)));  // some very popular latents
    [...s].forEach((m, j) => (idx[n * k + j] = m));
  }
  const W = randn(M * D, r), bDec = randn(D, r), G = randn(N * D, r);
  const A = T(acts, [N, k]), I = T(idx, [N, k], 'int32'), B = T(bDec, [D]);
  for (const wdt of ['float32', 'bfloat16'] as const) {
    const Wt = T(W, [M, D], wdt), Wr = roundTo(W, wdt);
    const dec1 = f32(await addon!.testing.cudaDecode(A.handle, I.handle, Wt.handle, B.handle));
    checkClose(`decode ${wdt}`, dec1, decodeRef(acts, idx, Wr, N, k, D, bDec), 1e-5, 1e-5);
    // Decoder weights kept on the device: the same kernel, the same output.
    const dec = await addon!.testing.cudaDecoderCreate(Wt.handle, B.handle);
    assert.deepEqual(f32(await dec.decode(A.handle, I.handle)), dec1, `resident decoder differs ${tag}`);
    assert.throws(() => (dec.decode as any).call({}, A.handle, I.handle), TypeError);
    dec.dispose();
    assert.throws(() => dec.decode(A.handle, I.handle), { code: 'ERR_SPARSIFY_DISPOSED' });
    const g1 = await addon!.testing.cudaDecodeBackward(T(G, [N, D]).handle, A.handle, I.handle, Wt.handle);
    const ga = new Float64Array(N * k);
    for (let s = 0; s < N * k; s++) {
      const n = Math.floor(s / k);
      for (let d = 0; d < D; d++) ga[s] += G[n * D + d] * Wr[idx[s] * D + d];
    }
    checkClose('decode grad acts', f32(g1.gradActs), ga, 1e-5, 1e-5);
    checkClose('decode grad W', f32(g1.gradWDec), scatterRows(acts, idx, G, N, k, M, D).out, 1e-5, 1e-5);
    const gb = new Float64Array(D);
    for (let n = 0; n < N; n++) for (let d = 0; d < D; d++) gb[d] += G[n * D + d];
    checkClose('decode grad b_dec', f32(g1.gradBDec), gb, 1e-5, 1e-5);
    const g2 = await addon!.testing.cudaDecodeBackward(T(G, [N, D]).handle, A.handle, I.handle, Wt.handle);
    assert.deepEqual(f32(g2.gradWDec), f32(g1.gradWDec), 'grad W_dec is not deterministic');
  }
  // Encoder backward (FusedEncoder.backward): embedding-bag for x, scatter-add for W and b.
  const gAct = randn(N * k, r), xin = randn(N * D, r), Wenc = randn(M * D, r);
  const e1 = await addon!.testing.cudaEncoderBackward(T(gAct, [N, k]).handle, I.handle, T(xin, [N, D]).handle, T(Wenc, [M, D]).handle);
  const sc = scatterRows(gAct, idx, xin, N, k, M, D);
  checkClose('encoder grad x', f32(e1.gradX), decodeRef(gAct, idx, Wenc, N, k, D), 1e-5, 1e-5);
  checkClose('encoder grad W', f32(e1.gradWEnc), sc.out, 1e-5, 1e-5);
  checkClose('encoder grad b', f32(e1.gradBEnc), sc.sums, 1e-5, 1e-5);
  const e2 = await addon!.testing.cudaEncoderBackward(T(gAct, [N, k]).handle, I.handle, T(xin, [N, D]).handle, T(Wenc, [M, D]).handle);
  assert.deepEqual(f32(e2.gradWEnc), f32(e1.gradWEnc), 'grad W_enc is not deterministic');
});

test('decoder renormalisation, gradient projection, Adam and signum match the formulas', opts, async () => {
  const r = rng(seed + 5);
  const M = 37, D = 300;
  const W = randn(M * D, r), G = randn(M * D, r);
  const Wn = f32(await addon!.testing.cudaNormalizeRows(T(W, [M, D]).handle));
  const refN = new Float64Array(M * D);
  for (let m = 0; m < M; m++) {
    let ss = 0;
    for (let d = 0; d < D; d++) ss += W[m * D + d] ** 2;
    for (let d = 0; d < D; d++) refN[m * D + d] = W[m * D + d] / (Math.sqrt(ss) + 1.1920928955078125e-7);
  }
  checkClose('normalize rows', Wn, refN, 1e-5, 1e-7);
  const P = f32(await addon!.testing.cudaProjectGrad(T(G, [M, D]).handle, T(Wn, [M, D]).handle));
  const refP = new Float64Array(M * D);
  for (let m = 0; m < M; m++) {
    let dot = 0;
    for (let d = 0; d < D; d++) dot += G[m * D + d] * Wn[m * D + d];
    for (let d = 0; d < D; d++) refP[m * D + d] = G[m * D + d] - dot * Wn[m * D + d];
  }
  checkClose('project grad', P, refP, 1e-4, 1e-5);

  // Adam, 3 steps with fresh gradients; float64 mirror of torch's formula.
  const n = 1000, lr = 2e-4, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  let p: Float32Array = randn(n, r), m: Float32Array = new Float32Array(n), v: Float32Array = new Float32Array(n);
  const rp = Float64Array.from(p), rm = new Float64Array(n), rv = new Float64Array(n);
  for (let step = 1; step <= 3; step++) {
    const g = randn(n, r);
    const res = await addon!.testing.cudaAdamStep(T(p, [n]).handle, T(g, [n]).handle, T(m, [n]).handle, T(v, [n]).handle, { lr, beta1: b1, beta2: b2, eps, step });
    [p, m, v] = [f32(res.param), f32(res.m), f32(res.v)];
    const bc1 = 1 - b1 ** step, bc2 = 1 - b2 ** step;
    for (let i = 0; i < n; i++) {
      rm[i] = lerp(rm[i], g[i], 1 - b1);
      rv[i] = rv[i] * b2 + (1 - b2) * g[i] * g[i];
      rp[i] -= (lr / bc1) * (rm[i] / (Math.sqrt(rv[i]) / Math.sqrt(bc2) + eps));
    }
  }
  checkClose('adam param', p, rp, 1e-6, 1e-7);
  // m is a sum of terms (1-β1)·g of size up to ~0.5 that may cancel: f32 rounding leaves ~3e-8 per step.
  checkClose('adam m', m, rm, 1e-5, 1e-7);

  // Schedule-free signum: host bookkeeping of lr_max / weight_sum gives c.
  const beta = 0.95, lr2 = 5e-3;
  let y: Float32Array = randn(n, r), z: Float32Array = Float32Array.from(y);
  const ry = Float64Array.from(y), rz = Float64Array.from(y);
  let lrMax = 0, wsum = 0;
  for (let k = 0; k < 3; k++) {
    const g = randn(n, r);
    lrMax = Math.max(lrMax, lr2);
    const weight = lrMax ** 2;
    wsum += weight;
    const c = weight / wsum;
    const res = await addon!.testing.cudaSignumStep(T(y, [n]).handle, T(z, [n]).handle, T(g, [n]).handle, { lr: lr2, c, beta });
    [y, z] = [f32(res.y), f32(res.z)];
    for (let i = 0; i < n; i++) {
      let x = lerp(ry[i], rz[i], 1 - 1 / beta);
      rz[i] -= lr2 * Math.sign(g[i]);
      x = lerp(x, rz[i], c);
      ry[i] = lerp(x, rz[i], 1 - beta);
    }
  }
  checkClose('signum y', y, ry, 1e-5, 1e-6);
  checkClose('signum z', z, rz, 1e-6, 1e-7);
});

test('transformer blocks: LayerNorm, RMSNorm, RoPE, activations, attention', opts, async () => {
  const r = rng(seed + 6);
  const R = 13, D = 200;
  const x = randn(R * D, r, 2), w = randn(D, r), b = randn(D, r);
  const ln = new Float64Array(R * D), rms = new Float64Array(R * D);
  for (let i = 0; i < R; i++) {
    let s = 0, q = 0, ss = 0;
    for (let d = 0; d < D; d++) s += x[i * D + d];
    const mean = s / D;
    for (let d = 0; d < D; d++) { q += (x[i * D + d] - mean) ** 2; ss += x[i * D + d] ** 2; }
    const rstd = 1 / Math.sqrt(q / D + 1e-5), rr = 1 / Math.sqrt(ss / D + 1e-6);
    for (let d = 0; d < D; d++) {
      ln[i * D + d] = (x[i * D + d] - mean) * rstd * w[d] + b[d];
      rms[i * D + d] = x[i * D + d] * rr * (1 + w[d]);
    }
  }
  checkClose('layernorm', f32(await addon!.testing.cudaLayerNorm(T(x, [R, D]).handle, T(w, [D]).handle, T(b, [D]).handle, { eps: 1e-5 })), ln, 1e-4, 1e-5);
  checkClose('rmsnorm (1+w)', f32(await addon!.testing.cudaRmsNorm(T(x, [R, D]).handle, T(w, [D]).handle, { eps: 1e-6, addOne: true })), rms, 1e-4, 1e-5);

  const Tn = 9, H = 3, hd = 16;
  const q = randn(Tn * H * hd, r), pos = new Int32Array(Tn).map((_, i) => i * 7 + 3);
  for (const [neox, rd] of [[true, 16], [false, 16], [true, 8]] as const) {
    const ref = new Float64Array(Tn * H * hd);
    for (let t = 0; t < Tn; t++)
      for (let h = 0; h < H; h++)
        for (let d = 0; d < hd; d++) {
          const e = (t * H + h) * hd + d;
          if (d >= rd) { ref[e] = q[e]; continue; }
          const half = rd / 2;
          const first = neox ? d < half : d % 2 === 0;
          const i = neox ? (first ? d : d - half) : d >> 1;
          const partner = neox ? (first ? e + half : e - half) : (first ? e + 1 : e - 1);
          const ang = pos[t] * 10000 ** (-(2 * i) / rd);
          ref[e] = first ? q[e] * Math.cos(ang) - q[partner] * Math.sin(ang) : q[e] * Math.cos(ang) + q[partner] * Math.sin(ang);
        }
    checkClose(`rope neox=${neox} rd=${rd}`, f32(await addon!.testing.cudaRope(T(q, [Tn, H, hd]).handle, T(pos, [Tn], 'int32').handle, { theta: 10000, rotaryDim: rd, neox })), ref, 1e-4, 1e-5);
  }

  const xa = randn(500, r, 3);
  const acts: Record<string, (v: number) => number> = {
    gelu: (v) => 0.5 * v * (1 + erf(v / Math.SQRT2)),
    gelu_tanh: (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))),
    silu: (v) => v / (1 + Math.exp(-v)),
    relu: (v) => Math.max(v, 0),
  };
  for (const [kind, fn] of Object.entries(acts))
    checkClose(kind, f32(await addon!.testing.cudaActivation(T(xa, [500]).handle, kind)), Array.from(xa, fn), 1e-5, 1e-6);

  // Attention: GQA (6 query heads over 2 kv heads), causal, sliding window, softcap, non-causal.
  const S = 70, Hq = 6, Hkv = 2, hdim = 40;
  const Q = randn(S * Hq * hdim, r), K = randn(S * Hkv * hdim, r), V = randn(S * Hkv * hdim, r);
  for (const o of [{ causal: true }, { causal: true, window: 17 }, { causal: true, softcap: 5 }, { causal: false }, { causal: true, scale: 0.3 }]) {
    const scale = (o as { scale?: number }).scale ?? 1 / Math.sqrt(hdim);
    const ref = new Float64Array(S * Hq * hdim);
    for (let i = 0; i < S; i++)
      for (let h = 0; h < Hq; h++) {
        const hk = Math.floor(h / (Hq / Hkv)), s: number[] = [], js: number[] = [];
        for (let j = 0; j < S; j++) {
          if (o.causal && j > i) continue;
          if ((o as { window?: number }).window && j <= i - (o as { window: number }).window) continue;
          let dot = 0;
          for (let d = 0; d < hdim; d++) dot += Q[(i * Hq + h) * hdim + d] * K[(j * Hkv + hk) * hdim + d];
          dot *= scale;
          const cap = (o as { softcap?: number }).softcap;
          if (cap) dot = cap * Math.tanh(dot / cap);
          s.push(dot);
          js.push(j);
        }
        const mx = Math.max(...s), e = s.map((v) => Math.exp(v - mx)), sum = e.reduce((a, v) => a + v, 0);
        for (let d = 0; d < hdim; d++) {
          let acc = 0;
          js.forEach((j, t) => (acc += (e[t] / sum) * V[(j * Hkv + hk) * hdim + d]));
          ref[(i * Hq + h) * hdim + d] = acc;
        }
      }
    const got = f32(await addon!.testing.cudaAttention(T(Q, [S, Hq, hdim]).handle, T(K, [S, Hkv, hdim]).handle, T(V, [S, Hkv, hdim]).handle, o));
    checkClose(`attention ${JSON.stringify(o)}`, got, ref, 1e-4, 1e-5);
  }
});

// Abramowitz-Stegun 7.1.26 is too coarse for a 1e-5 check; use a series/continued fraction.
function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    let term = ax, sum = ax;
    for (let n = 1; n < 200; n++) {
      term *= (-ax * ax) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction for large |x|
  let f = 0;
  for (let n = 60; n >= 1; n--) f = n / 2 / (ax + f);
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
  return Math.sign(x) * (1 - erfc);
}
