// The CPU training step of ReLU + L1 and JumpReLU coders (thresholdOps.thresholdStep) against
// the float64 reference (itself checked against PyTorch autograd, kinds-reference.test.ts) on the
// same fixtures; gradient accumulation; results independent of the thread count; typed errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { kindStepReference, readSafetensorsHeader, readSafetensorsRaw, setNumThreads, numThreads, Tensor, thresholdOps, type KindSpec } from '@sparsify/core';

const FIX = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'kinds');

function load(name: string) {
  const path = join(FIX, `${name}.safetensors`);
  const raw = readSafetensorsRaw(path);
  const t = new Map<string, Float64Array>();
  for (const [k, v] of raw.tensors) t.set(k, new Float64Array(v.data.buffer.slice(v.data.byteOffset, v.data.byteOffset + v.data.byteLength)));
  const shape = (k: string) => [...readSafetensorsHeader(path).tensors.get(k)!.shape];
  return { t, meta: raw.metadata ?? {}, shape };
}

const f32 = (a: Float64Array, shape: number[]) => Tensor.from(Float32Array.from(a), shape);

function close(got: Float32Array, want: Float64Array, what: string, tol: number): void {
  let scale = 1e-12;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= tol * scale, `${what}[${i}]: ${got[i]} vs ${want[i]}`);
}

const CASES: [string, (m: Record<string, string>) => KindSpec, (m: Record<string, string>) => thresholdOps.ThresholdStepOptions][] = [
  ['relu_l1', (m) => ({ kind: 'relu', l1Coefficient: Number(m.l1_coefficient) }), (m) => ({ kind: 'relu', l1Coefficient: Number(m.l1_coefficient) })],
  // lp_norm p != 1 (SAELens ‖f ⊙ n‖_p), each fixture with a decoder row of norm 0.
  ...(['relu_lp2', 'relu_lp1_5'] as const).map((name) => [name,
    (m: Record<string, string>): KindSpec => ({ kind: 'relu', l1Coefficient: Number(m.l1_coefficient), lpNorm: Number(m.lp_norm) }),
    (m: Record<string, string>): thresholdOps.ThresholdStepOptions => ({ kind: 'relu', l1Coefficient: Number(m.l1_coefficient), lpNorm: Number(m.lp_norm) })] as const),
  ['jumprelu_step', (m) => ({ kind: 'jumprelu', bandwidth: Number(m.bandwidth), sparsityLoss: 'step', l0Coefficient: Number(m.l0_coefficient) }),
    (m) => ({ kind: 'jumprelu', bandwidth: Number(m.bandwidth), sparsityLoss: 'step', l0Coefficient: Number(m.l0_coefficient) })],
  ['jumprelu_tanh', (m) => ({ kind: 'jumprelu', bandwidth: Number(m.bandwidth), sparsityLoss: 'tanh', l0Coefficient: Number(m.l0_coefficient), tanhScale: Number(m.tanh_scale) }),
    (m) => ({ kind: 'jumprelu', bandwidth: Number(m.bandwidth), sparsityLoss: 'tanh', l0Coefficient: Number(m.l0_coefficient), tanhScale: Number(m.tanh_scale) })],
];

function setOf(t: Map<string, Float64Array>, M: number, D: number, jump: boolean): thresholdOps.ThresholdStepTensors {
  return {
    encW: f32(t.get('encoder.weight')!, [M, D]),
    encB: f32(t.get('encoder.bias')!, [M]),
    W_dec: f32(t.get('W_dec')!, [M, D]),
    b_dec: f32(t.get('b_dec')!, [D]),
    ...(jump ? { logThreshold: f32(t.get('log_threshold')!, [M]) } : {}),
  };
}
const zerosLike = (M: number, D: number, jump: boolean): thresholdOps.ThresholdStepTensors => ({
  encW: Tensor.zeros([M, D]), encB: Tensor.zeros([M]), W_dec: Tensor.zeros([M, D]), b_dec: Tensor.zeros([D]), ...(jump ? { logThreshold: Tensor.zeros([M]) } : {}),
});

for (const [name, specOf, optsOf] of CASES) {
  test(`${name}: CPU training step equals the float64 reference`, async () => {
    const { t, meta, shape } = load(name);
    const [N, D] = shape('x');
    const M = shape('encoder.bias')[0];
    const jump = name.startsWith('jumprelu');
    // The reference on the f32-rounded parameters, so only the kernel's f32 arithmetic differs.
    const r32 = (a: Float64Array) => Float64Array.from(Float32Array.from(a));
    const ref = kindStepReference(
      { encW: r32(t.get('encoder.weight')!), encB: r32(t.get('encoder.bias')!), W_dec: r32(t.get('W_dec')!), b_dec: r32(t.get('b_dec')!), ...(jump ? { logThreshold: r32(t.get('log_threshold')!) } : {}) },
      r32(t.get('x')!), N, specOf(meta),
    );
    const w = setOf(t, M, D, jump);
    const g = zerosLike(M, D, jump);
    const x = f32(t.get('x')!, [N, D]);
    const L = await thresholdOps.thresholdStep(w, g, x, optsOf(meta));
    assert.ok(Math.abs(L.mse - ref.mse) <= 1e-5 * ref.mse, `mse ${L.mse} vs ${ref.mse}`);
    assert.ok(Math.abs(L.sparsity - ref.sparsity) <= 1e-5 * Math.max(1, ref.sparsity), `sparsity ${L.sparsity} vs ${ref.sparsity}`);
    close(g.encW.toFloat32Array(), ref.grads.encW, 'grad encW', 1e-4);
    close(g.encB.toFloat32Array(), ref.grads.encB, 'grad encB', 1e-4);
    close(g.W_dec.toFloat32Array(), ref.grads.W_dec, 'grad W_dec', 1e-4);
    close(g.b_dec.toFloat32Array(), ref.grads.b_dec, 'grad b_dec', 1e-4);
    if (jump) close(g.logThreshold!.toFloat32Array(), ref.grads.logThreshold!, 'grad log_threshold', 1e-4);
    // Accumulation: a second call with lossScale 0.5 adds half the gradient again.
    const before = g.encW.toFloat32Array().slice();
    await thresholdOps.thresholdStep(w, g, x, { ...optsOf(meta), lossScale: 0.5 });
    const after = g.encW.toFloat32Array();
    for (let i = 0; i < before.length; i++) assert.ok(Math.abs(after[i] - 1.5 * before[i]) <= 1e-5 * Math.max(1, Math.abs(before[i])));
  });
}

test('threshold step: bitwise independent of the thread count; typed errors', async () => {
  const { t, meta, shape } = load('jumprelu_tanh');
  const [N, D] = shape('x');
  const M = shape('encoder.bias')[0];
  // A larger batch (the fixture rows repeated with a shift) so several row blocks exist.
  const xs = new Float32Array(300 * D);
  const x0 = t.get('x')!;
  for (let i = 0; i < xs.length; i++) xs[i] = x0[i % (N * D)] + 0.01 * Math.floor(i / (N * D));
  const x = Tensor.from(xs, [300, D]);
  const w = setOf(t, M, D, true);
  const opts = { kind: 'jumprelu' as const, bandwidth: Number(meta.bandwidth), sparsityLoss: 'tanh' as const, l0Coefficient: 0.2, tanhScale: 4 };
  const prev = numThreads();
  const results: Float32Array[][] = [];
  try {
    for (const n of [1, 2]) {
      setNumThreads(n);
      const g = zerosLike(M, D, true);
      await thresholdOps.thresholdStep(w, g, x, opts);
      results.push([g.encW, g.encB, g.W_dec, g.b_dec, g.logThreshold!].map((v) => v.toFloat32Array()));
    }
  } finally {
    setNumThreads(prev);
  }
  for (let i = 0; i < results[0].length; i++) assert.deepEqual(results[1][i], results[0][i]);
  const g = zerosLike(M, D, false);
  await assert.rejects(thresholdOps.thresholdStep(w, g, x, opts), /logThreshold/);
  await assert.rejects(thresholdOps.thresholdStep(w, zerosLike(M, D, true), x, { ...opts, kind: 'topk' as 'relu' }), /kind must be/);
  await assert.rejects(thresholdOps.thresholdStep(w, zerosLike(M, D, true), Tensor.zeros([2, D + 1]), opts), /x must be/);
  await assert.rejects(thresholdOps.thresholdStep(w, zerosLike(M, D, true), x, { ...opts, bandwidth: 0 }), /bandwidth/);
  for (const lpNorm of [0.5, Number.NaN, Infinity])
    await assert.rejects(thresholdOps.thresholdStep(w, zerosLike(M, D, false), x, { kind: 'relu', l1Coefficient: 0.1, lpNorm }), /lpNorm \(lp_norm\) must be a finite number >= 1/);
});

for (const name of ['batchtopk', 'matryoshka']) {
  test(`${name}: CPU training step equals the float64 reference (kept set, losses, gradients, threshold input)`, async () => {
    const { t, meta, shape } = load(name);
    const [N, D] = shape('x');
    const M = shape('encoder.bias')[0];
    const r32 = (a: Float64Array) => Float64Array.from(Float32Array.from(a));
    const widths: number[] = name === 'matryoshka' ? JSON.parse(meta.widths) : [];
    const spec: KindSpec = name === 'matryoshka'
      ? { kind: 'matryoshka', k: Number(meta.k), thresholdLr: 0.01, threshold: 0.25, widths }
      : { kind: 'batchtopk', k: Number(meta.k), thresholdLr: 0.01, threshold: 0.25 };
    const ref = kindStepReference({ encW: r32(t.get('encoder.weight')!), encB: r32(t.get('encoder.bias')!), W_dec: r32(t.get('W_dec')!), b_dec: r32(t.get('b_dec')!) }, r32(t.get('x')!), N, spec);
    const w = setOf(t, M, D, false);
    const g = zerosLike(M, D, false);
    const L = await thresholdOps.batchTopKStep(w, g, f32(t.get('x')!, [N, D]), { k: Number(meta.k), widths });
    assert.equal(L.kept, Math.floor(Number(meta.k) * N));
    assert.ok(Math.abs(L.mse - ref.mse) <= 1e-5 * ref.mse, `mse ${L.mse} vs ${ref.mse}`);
    assert.ok(Math.abs(L.inner - ref.sparsity) <= 1e-5 * Math.max(1, ref.sparsity), `inner ${L.inner} vs ${ref.sparsity}`);
    const th = 0.99 * 0.25 + 0.01 * L.minKept;
    assert.ok(Math.abs(th - ref.thresholdAfter!) <= 1e-7, `threshold ${th} vs ${ref.thresholdAfter}`);
    close(g.encW.toFloat32Array(), ref.grads.encW, 'grad encW', 1e-4);
    close(g.encB.toFloat32Array(), ref.grads.encB, 'grad encB', 1e-4);
    close(g.W_dec.toFloat32Array(), ref.grads.W_dec, 'grad W_dec', 1e-4);
    close(g.b_dec.toFloat32Array(), ref.grads.b_dec, 'grad b_dec', 1e-4);
    await assert.rejects(thresholdOps.batchTopKStep(w, zerosLike(M, D, false), f32(t.get('x')!, [N, D]), { k: 0 }), /k must be > 0/);
    await assert.rejects(thresholdOps.batchTopKStep(w, zerosLike(M, D, false), f32(t.get('x')!, [N, D]), { k: 2, widths: [24, 8] }), /increasing/);
  });
}

test('batchtopk step: bitwise independent of the thread count on several row blocks', async () => {
  const { t, meta, shape } = load('matryoshka');
  const [N, D] = shape('x');
  const M = shape('encoder.bias')[0];
  const xs = new Float32Array(300 * D);
  const x0 = t.get('x')!;
  for (let i = 0; i < xs.length; i++) xs[i] = x0[i % (N * D)] + 0.01 * Math.floor(i / (N * D));
  const x = Tensor.from(xs, [300, D]);
  const w = setOf(t, M, D, false);
  const prev = numThreads();
  const results: Float32Array[][] = [];
  try {
    for (const n of [1, 2]) {
      setNumThreads(n);
      const g = zerosLike(M, D, false);
      await thresholdOps.batchTopKStep(w, g, x, { k: Number(meta.k), widths: JSON.parse(meta.widths) });
      results.push([g.encW, g.encB, g.W_dec, g.b_dec].map((v) => v.toFloat32Array()));
    }
  } finally {
    setNumThreads(prev);
  }
  for (let i = 0; i < results[0].length; i++) assert.deepEqual(results[1][i], results[0][i]);
});
