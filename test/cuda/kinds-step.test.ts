// The training steps of the SAELens kinds on the device (native/cuda/threshold_step.cu: ReLU + L1,
// JumpReLU step / tanh; native/cuda/batchtopk_step.cu: BatchTopK, Matryoshka) against the CPU
// kernels and the float64 reference (kinds/reference.ts), on fresh random inputs (seed printed;
// SPARSIFY_TEST_SEED=... reproduces) whose shapes are not multiples of the 32-row / 32-latent
// tiles. Skipped, with the reason, without a CUDA device (node scripts/test.mjs --emu runs it).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { kindStepReference, Tensor, ValueError, ShapeError, thresholdOps, type KindSpec } from '@sparsify/core';

import { cudaAddon } from './cuda-env.js';
import { randn, rng } from './reference.js';

const { addon, skip } = cudaAddon();
const opts = { skip: skip ?? false };
const seed = Number(process.env.SPARSIFY_TEST_SEED ?? Math.floor(Math.random() * 1e9));
const tag = `(seed ${seed})`;
type Set = thresholdOps.ThresholdStepTensors;
const KEYS = ['encW', 'encB', 'W_dec', 'b_dec', 'logThreshold'] as const;

interface Params {
  N: number;
  D: number;
  M: number;
  p: Record<(typeof KEYS)[number], Float32Array>;
  x: Float32Array;
}

function params(N: number, D: number, M: number, r: () => number, biasShift = 0): Params {
  const f = (a: ArrayLike<number>, s = 1, b = 0) => Float32Array.from(a, (v) => v * s + b);
  return {
    N, D, M,
    p: {
      encW: f(randn(M * D, r), 1 / Math.sqrt(D)),
      encB: f(randn(M, r), 0.2, biasShift),
      W_dec: f(randn(M * D, r), 1 / Math.sqrt(D)),
      b_dec: f(randn(D, r), 0.1),
      logThreshold: f(randn(M, r), 0.3, Math.log(0.3)),
    },
    x: f(randn(N * D, r)),
  };
}

const tensors = (c: Params, jump: boolean, device?: 'cuda'): Set => {
  const o = device ? { device } : {};
  const s: Set = { encW: Tensor.from(c.p.encW, [c.M, c.D], o), encB: Tensor.from(c.p.encB, [c.M], o), W_dec: Tensor.from(c.p.W_dec, [c.M, c.D], o), b_dec: Tensor.from(c.p.b_dec, [c.D], o) };
  if (jump) s.logThreshold = Tensor.from(c.p.logThreshold, [c.M], o);
  return s;
};
const zeros = (c: Params, jump: boolean, device?: 'cuda'): Set => {
  const o = device ? { device } : {};
  const s: Set = { encW: Tensor.zeros([c.M, c.D], o), encB: Tensor.zeros([c.M], o), W_dec: Tensor.zeros([c.M, c.D], o), b_dec: Tensor.zeros([c.D], o) };
  if (jump) s.logThreshold = Tensor.zeros([c.M], o);
  return s;
};
async function grads(s: Set): Promise<Record<string, Float32Array>> {
  const out: Record<string, Float32Array> = {};
  for (const k of KEYS) {
    const t = s[k];
    if (t) out[k] = (t.device === 'cuda' ? await t.to('cpu') : t).toFloat32Array();
  }
  return out;
}
const f64 = (a: Float32Array) => Float64Array.from(a);

function close(what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number): void {
  let scale = 1e-12;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++)
    assert.ok(Math.abs(got[i] - want[i]) <= tol * scale, `${what}[${i}]: ${got[i]} vs ${want[i]} (tol ${tol} x ${scale}) ${tag}`);
}

const STEPS: [string, thresholdOps.ThresholdStepOptions, KindSpec][] = [
  ['relu + L1', { kind: 'relu', l1Coefficient: 0.3 }, { kind: 'relu', l1Coefficient: 0.3 }],
  ['relu + lp_norm 2', { kind: 'relu', l1Coefficient: 0.3, lpNorm: 2 }, { kind: 'relu', l1Coefficient: 0.3, lpNorm: 2 }],
  ['relu + lp_norm 1.5', { kind: 'relu', l1Coefficient: 0.3, lpNorm: 1.5 }, { kind: 'relu', l1Coefficient: 0.3, lpNorm: 1.5 }],
  ['jumprelu step', { kind: 'jumprelu', l0Coefficient: 0.2, bandwidth: 0.5, sparsityLoss: 'step' }, { kind: 'jumprelu', l0Coefficient: 0.2, bandwidth: 0.5, sparsityLoss: 'step' }],
  ['jumprelu tanh', { kind: 'jumprelu', l0Coefficient: 0.2, bandwidth: 0.5, sparsityLoss: 'tanh', tanhScale: 4 },
    { kind: 'jumprelu', l0Coefficient: 0.2, bandwidth: 0.5, sparsityLoss: 'tanh', tanhScale: 4 }],
];

for (const [name, o, spec] of STEPS) {
  test(`${name}: CUDA training step equals the CPU kernel and the float64 reference`, opts, async () => {
    const jump = o.kind === 'jumprelu';
    const r = rng(seed + name.length);
    for (const [N, D, M] of [[37, 20, 70], [3, 9, 33]]) {
      const c = params(N, D, M, r);
      const ref = kindStepReference({ encW: f64(c.p.encW), encB: f64(c.p.encB), W_dec: f64(c.p.W_dec), b_dec: f64(c.p.b_dec), ...(jump ? { logThreshold: f64(c.p.logThreshold) } : {}) }, f64(c.x), N, spec);
      const x = Tensor.from(c.x, [N, D]);
      const gc = zeros(c, jump), gg = zeros(c, jump);
      const Lc = await thresholdOps.thresholdStep(tensors(c, jump), gc, x, o);
      const Lg = await addon!.cudaThresholdStep(handles(tensors(c, jump)), handles(gg), x.handle, o);
      const at = `${N}x${D}x${M}`;
      for (const [L, who] of [[Lg, 'cuda'], [Lc, 'cpu']] as const) {
        assert.ok(Math.abs(L.mse - ref.mse) <= 1e-5 * ref.mse, `${who} ${at} mse ${L.mse} vs ${ref.mse} ${tag}`);
        assert.ok(Math.abs(L.sparsity - ref.sparsity) <= 1e-5 * Math.max(1, ref.sparsity), `${who} ${at} sparsity ${L.sparsity} vs ${ref.sparsity} ${tag}`);
      }
      const a = await grads(gg), b = await grads(gc);
      for (const k of Object.keys(a)) {
        close(`${at} cuda grad ${k} vs reference`, a[k], ref.grads[k as keyof typeof ref.grads]!, 1e-4);
        close(`${at} cuda grad ${k} vs cpu`, a[k], b[k], 1e-4);
      }
    }
  });
}

test('relu lp_norm on the device: rows with no active latent and decoder rows of norm 0 get 0, not NaN', opts, async () => {
  const r = rng(seed + 7);
  const [N, D, M] = [9, 10, 40];
  const c = params(N, D, M, r);
  c.p.W_dec.fill(0, 3 * D, 4 * D); // latent 3: norm 0
  for (let d = 0; d < D; d++) c.x[d] = 0; // row 0: x = 0 ...
  c.p.b_dec.fill(0);
  c.p.encB.fill(-0.05); // ... so every latent of row 0 is off (h = b_enc < 0)
  for (const lpNorm of [2, 1.5]) {
    const o: thresholdOps.ThresholdStepOptions = { kind: 'relu', l1Coefficient: 0.3, lpNorm };
    const ref = kindStepReference({ encW: f64(c.p.encW), encB: f64(c.p.encB), W_dec: f64(c.p.W_dec), b_dec: f64(c.p.b_dec) }, f64(c.x), N, { kind: 'relu', l1Coefficient: 0.3, lpNorm });
    const x = Tensor.from(c.x, [N, D]);
    const gc = zeros(c, false), gg = zeros(c, false);
    const Lc = await thresholdOps.thresholdStep(tensors(c, false), gc, x, o);
    const Lg = await addon!.cudaThresholdStep(handles(tensors(c, false)), handles(gg), x.handle, o);
    for (const L of [Lc, Lg]) assert.ok(Math.abs(L.sparsity - ref.sparsity) <= 1e-5 * ref.sparsity, `p ${lpNorm} sparsity ${L.sparsity} vs ${ref.sparsity} ${tag}`);
    const a = await grads(gg), b = await grads(gc);
    for (const k of Object.keys(a)) {
      assert.ok(a[k].every(Number.isFinite) && b[k].every(Number.isFinite), `p ${lpNorm} grad ${k} finite ${tag}`);
      close(`p ${lpNorm} cuda grad ${k} vs reference`, a[k], ref.grads[k as keyof typeof ref.grads]!, 1e-4);
      close(`p ${lpNorm} cuda grad ${k} vs cpu`, a[k], b[k], 1e-4);
    }
  }
  await assert.rejects(async () => addon!.cudaThresholdStep(handles(tensors(c, false)), handles(zeros(c, false)), Tensor.from(c.x, [N, D]).handle, { kind: 'relu', lpNorm: 0.5 }),
    (e: Error) => e instanceof ValueError && /lpNorm \(lp_norm\) must be a finite number >= 1/.test(e.message));
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const handles = (s: Set): Record<string, any> => ({ encW: s.encW.handle, encB: s.encB.handle, logThreshold: s.logThreshold?.handle, W_dec: s.W_dec.handle, b_dec: s.b_dec.handle });

test('threshold step on cuda tensors: thresholdOps dispatches to the device, gradients accumulate in place', opts, async () => {
  const c = params(40, 24, 65, rng(seed + 5));
  const o: thresholdOps.ThresholdStepOptions = { kind: 'jumprelu', l0Coefficient: 0.1, bandwidth: 0.4, sparsityLoss: 'tanh' };
  const gh = zeros(c, true);
  const Lh = await addon!.cudaThresholdStep(handles(tensors(c, true)), handles(gh), Tensor.from(c.x, [c.N, c.D]).handle, o);
  const gd = zeros(c, true, 'cuda'), w = tensors(c, true, 'cuda'), x = Tensor.from(c.x, [c.N, c.D], { device: 'cuda' });
  const Ld = await thresholdOps.thresholdStep(w, gd, x, o);
  assert.deepEqual(Ld, Lh, 'device and host tensors give the same losses');
  const first = await grads(gd);
  assert.deepEqual(first, await grads(gh), 'device and host tensors give the same gradients');
  for (const k of KEYS) assert.equal(gd[k]!.device, 'cuda');
  await thresholdOps.thresholdStep(w, gd, x, { ...o, lossScale: 0.5 });
  const second = await grads(gd);
  for (const k of Object.keys(first)) close(`accumulated ${k}`, second[k], first[k].map((v) => 1.5 * v), 1e-6);
});

for (const widths of [[], [8, 31]] as number[][]) {
  const name = widths.length ? 'matryoshka' : 'batchtopk';
  test(`${name}: CUDA training step equals the CPU kernel and the float64 reference`, opts, async () => {
    const r = rng(seed + 7 + widths.length);
    for (const [N, D, M, k] of [[37, 20, 70, 4.5], [5, 9, 33, 2.2]]) {
      const c = params(N, D, M, r);
      const spec: KindSpec = widths.length
        ? { kind: 'matryoshka', k, thresholdLr: 0.01, threshold: 0.25, widths: [...widths, M] }
        : { kind: 'batchtopk', k, thresholdLr: 0.01, threshold: 0.25 };
      const ref = kindStepReference({ encW: f64(c.p.encW), encB: f64(c.p.encB), W_dec: f64(c.p.W_dec), b_dec: f64(c.p.b_dec) }, f64(c.x), N, spec);
      const gc = zeros(c, false), gg = zeros(c, false);
      const o = { k, widths };
      const Lc = await thresholdOps.batchTopKStep(tensors(c, false), gc, Tensor.from(c.x, [N, D]), o);
      const Lg = await thresholdOps.batchTopKStep(tensors(c, false), gg, Tensor.from(c.x, [N, D], { device: 'cuda' }), o);
      const at = `${N}x${D}x${M} k=${k}`;
      assert.equal(Lg.kept, Math.floor(k * N), `${at}: kept ${tag}`);
      assert.equal(Lg.kept, Lc.kept);
      assert.equal(Lg.minKept, Lc.minKept, `${at}: the smallest kept value ${tag}`);
      const th = 0.99 * 0.25 + 0.01 * Lg.minKept;
      assert.ok(Math.abs(th - ref.thresholdAfter!) <= 1e-7, `${at}: threshold ${th} vs ${ref.thresholdAfter} ${tag}`);
      assert.ok(Math.abs(Lg.mse - ref.mse) <= 1e-5 * ref.mse, `${at}: mse ${Lg.mse} vs ${ref.mse} ${tag}`);
      assert.ok(Math.abs(Lg.inner - ref.sparsity) <= 1e-5 * Math.max(1, ref.sparsity), `${at}: inner ${Lg.inner} vs ${ref.sparsity} ${tag}`);
      const a = await grads(gg), b = await grads(gc);
      for (const key of Object.keys(a)) {
        close(`${at} cuda grad ${key} vs reference`, a[key], ref.grads[key as keyof typeof ref.grads]!, 1e-4);
        close(`${at} cuda grad ${key} vs cpu`, a[key], b[key], 1e-4);
      }
    }
  });
}

test('batchtopk on the device: ties at the threshold split by flat index; fewer positives than k N', opts, async () => {
  // Every row the same: each value occurs N times, so floor(2.6 * 5) = 13 cuts a group of ties.
  const c = params(5, 12, 40, rng(seed + 9));
  for (let n = 1; n < c.N; n++) c.x.copyWithin(n * c.D, 0, c.D);
  for (const [k, biasShift] of [[2.6, 0], [30, -1.5]] as const) {
    const cc = { ...c, p: { ...c.p, encB: c.p.encB.map((v) => v + biasShift) } };
    const gc = zeros(cc, false), gg = zeros(cc, false);
    const Lc = await thresholdOps.batchTopKStep(tensors(cc, false), gc, Tensor.from(cc.x, [cc.N, cc.D]), { k });
    const Lg = await thresholdOps.batchTopKStep(tensors(cc, false), gg, Tensor.from(cc.x, [cc.N, cc.D], { device: 'cuda' }), { k });
    assert.equal(Lg.kept, Lc.kept, `k=${k}: kept ${tag}`);
    if (biasShift === 0) assert.equal(Lg.kept, 13);
    else assert.ok(Lg.kept < Math.floor(k * cc.N), `k=${k}: only the positive values are kept ${tag}`);
    assert.equal(Lg.minKept, Lc.minKept);
    assert.ok(Math.abs(Lg.mse - Lc.mse) <= 1e-5 * Lc.mse, `k=${k}: mse ${Lg.mse} vs cpu ${Lc.mse} ${tag}`);
    const a = await grads(gg), b = await grads(gc);
    for (const key of Object.keys(a)) close(`k=${k} grad ${key}`, a[key], b[key], 1e-4);
  }
});

test('CUDA training steps: bad shapes and options are typed errors', opts, async () => {
  const c = params(4, 8, 10, rng(seed + 11));
  const x = Tensor.from(c.x, [4, 8], { device: 'cuda' });
  const w = tensors(c, true, 'cuda');
  const o: thresholdOps.ThresholdStepOptions = { kind: 'jumprelu', l0Coefficient: 0.1, bandwidth: 0.4 };
  await assert.rejects(thresholdOps.thresholdStep(w, zeros(c, false, 'cuda'), x, o), (e) => e instanceof ValueError && /grads needs logThreshold/.test((e as Error).message));
  await assert.rejects(thresholdOps.thresholdStep(w, zeros(c, true), Tensor.zeros([4, 9], { device: 'cuda' }), o), (e) => e instanceof ShapeError && /x must be \[tokens, 8\]/.test((e as Error).message));
  await assert.rejects(thresholdOps.thresholdStep({ ...w, encB: Tensor.zeros([11]) }, zeros(c, true), x, o), (e) => e instanceof ShapeError && /encB/.test((e as Error).message));
  await assert.rejects(thresholdOps.thresholdStep(w, zeros(c, true), x, { ...o, bandwidth: 0 }), /bandwidth must be > 0/);
  await assert.rejects(thresholdOps.thresholdStep(w, zeros(c, true), x, { ...o, kind: 'topk' as 'relu' }), /kind must be/);
  await assert.rejects(thresholdOps.batchTopKStep(w, zeros(c, false), x, { k: 0 }), /k must be > 0/);
  await assert.rejects(thresholdOps.batchTopKStep(w, zeros(c, false), x, { k: 2, widths: [6, 3] }), /increasing/);
  await assert.rejects(thresholdOps.batchTopKStep(w, zeros(c, false), x, { k: 0.1 }), /floor\(k \* rows\) = 0/);
  const bad = Float32Array.from(c.x);
  bad[5] = Infinity;
  await assert.rejects(thresholdOps.batchTopKStep(w, zeros(c, false), Tensor.from(bad, [4, 8], { device: 'cuda' }), { k: 2 }), (e) => e instanceof ValueError && /flat index 5/.test((e as Error).message));
});

// didFire (a device tensor), applyBDecToInput: false and perRow (TopK / Matryoshka over TopK):
// the device kernels against the CPU kernels, which the float64 reference covers (test/sae).
async function firedOf(t: Tensor): Promise<Int32Array> {
  return (t.device === 'cuda' ? await t.to('cpu') : t).toInt32Array();
}

for (const applyBDecToInput of [true, false]) {
  test(`threshold steps, didFire on the device, applyBDecToInput ${applyBDecToInput}: CUDA equals CPU`, opts, async () => {
    const r = rng(seed + 13 + Number(applyBDecToInput));
    for (const [, o] of STEPS) {
      const jump = o.kind === 'jumprelu';
      const c = params(37, 20, 70, r, -2.5);
      const fc = Tensor.zeros([c.M], { dtype: 'int32' }), fg = Tensor.zeros([c.M], { dtype: 'int32', device: 'cuda' });
      const gc = zeros(c, jump), gg = zeros(c, jump, 'cuda');
      const Lc = await thresholdOps.thresholdStep(tensors(c, jump), gc, Tensor.from(c.x, [c.N, c.D]), { ...o, didFire: fc, applyBDecToInput });
      const Lg = await thresholdOps.thresholdStep(tensors(c, jump, 'cuda'), gg, Tensor.from(c.x, [c.N, c.D], { device: 'cuda' }), { ...o, didFire: fg, applyBDecToInput });
      assert.ok(Math.abs(Lg.mse - Lc.mse) <= 1e-5 * Lc.mse, `${o.kind} mse ${Lg.mse} vs ${Lc.mse} ${tag}`);
      assert.ok(Math.abs(Lg.sparsity - Lc.sparsity) <= 1e-5 * Math.max(1, Lc.sparsity), `${o.kind} sparsity ${tag}`);
      const want = await firedOf(fc);
      assert.ok(want.some((v) => v === 1) && want.some((v) => v === 0), `the case marks some latents, not all ${tag}`);
      assert.deepEqual(await firedOf(fg), want, `${o.kind} fired marks ${tag}`);
      const a = await grads(gg), b = await grads(gc);
      for (const k of Object.keys(a)) close(`${o.kind} grad ${k}`, a[k], b[k], 1e-4);
    }
  });

  test(`batchtopk / topk per row / matryoshka, didFire, applyBDecToInput ${applyBDecToInput}: CUDA equals CPU`, opts, async () => {
    const r = rng(seed + 17 + Number(applyBDecToInput));
    for (const [k, perRow, widths] of [[3.5, false, [8, 31]], [4, true, []], [5, true, [8, 31]], [70, true, []]] as [number, boolean, number[]][]) {
      const c = params(37, 20, 70, r);
      const fc = Tensor.zeros([c.M], { dtype: 'int32' }), fg = Tensor.zeros([c.M], { dtype: 'int32', device: 'cuda' });
      const gc = zeros(c, false), gg = zeros(c, false, 'cuda');
      const o = { k, perRow, widths, applyBDecToInput };
      const Lc = await thresholdOps.batchTopKStep(tensors(c, false), gc, Tensor.from(c.x, [c.N, c.D]), { ...o, didFire: fc });
      const Lg = await thresholdOps.batchTopKStep(tensors(c, false, 'cuda'), gg, Tensor.from(c.x, [c.N, c.D], { device: 'cuda' }), { ...o, didFire: fg });
      const at = `k=${k} perRow=${perRow} widths=${widths}`;
      assert.equal(Lg.kept, Lc.kept, `${at}: kept ${tag}`);
      if (perRow && k < 10) assert.equal(Lg.kept, k * c.N, `${at}: k per row ${tag}`);
      assert.equal(Lg.minKept, Lc.minKept, `${at}: minKept ${tag}`);
      assert.ok(Math.abs(Lg.mse - Lc.mse) <= 1e-5 * Lc.mse, `${at}: mse ${Lg.mse} vs ${Lc.mse} ${tag}`);
      assert.ok(Math.abs(Lg.inner - Lc.inner) <= 1e-5 * Math.max(1, Lc.inner), `${at}: inner ${tag}`);
      assert.deepEqual(await firedOf(fg), await firedOf(fc), `${at}: fired marks ${tag}`);
      const a = await grads(gg), b = await grads(gc);
      for (const key of Object.keys(a)) close(`${at} grad ${key}`, a[key], b[key], 1e-4);
    }
  });
}

test('topk per row on the device: ties in a row kept in latent order, rows with fewer positives', opts, async () => {
  // Duplicate latents (same encoder row) tie in every row; a negative bias leaves few positives.
  const c = params(6, 10, 40, rng(seed + 19));
  for (let m = 1; m < c.M; m += 2) {
    c.p.encW.copyWithin(m * c.D, (m - 1) * c.D, m * c.D);
    c.p.encB[m] = c.p.encB[m - 1];
    c.p.W_dec.copyWithin(m * c.D, (m - 1) * c.D, m * c.D);
  }
  for (const [k, biasShift] of [[3, 0], [25, -0.8]] as const) {
    const cc = { ...c, p: { ...c.p, encB: c.p.encB.map((v) => v + biasShift) } };
    const gc = zeros(cc, false), gg = zeros(cc, false);
    const Lc = await thresholdOps.batchTopKStep(tensors(cc, false), gc, Tensor.from(cc.x, [cc.N, cc.D]), { k, perRow: true });
    const Lg = await thresholdOps.batchTopKStep(tensors(cc, false), gg, Tensor.from(cc.x, [cc.N, cc.D], { device: 'cuda' }), { k, perRow: true });
    assert.equal(Lg.kept, Lc.kept, `k=${k}: kept ${tag}`);
    assert.equal(Lg.minKept, Lc.minKept);
    assert.ok(Math.abs(Lg.mse - Lc.mse) <= 1e-5 * Lc.mse, `k=${k}: mse ${tag}`);
    const a = await grads(gg), b = await grads(gc);
    for (const key of Object.keys(a)) close(`k=${k} grad ${key}`, a[key], b[key], 1e-4);
  }
  await assert.rejects(
    thresholdOps.batchTopKStep(tensors(c, false), zeros(c, false), Tensor.from(c.x, [c.N, c.D], { device: 'cuda' }), { k: 2.5, perRow: true }),
    (e) => e instanceof ValueError && /integer in \[1, num_latents\]/.test((e as Error).message),
  );
});
