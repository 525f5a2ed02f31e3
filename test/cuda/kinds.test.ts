// The threshold encoder of the SAELens kinds (ReLU / JumpReLU / gated) on the device
// (native/cuda/threshold_encode.cu) against the CPU kernel and the float64 reference, on fresh
// random inputs (seed printed; SPARSIFY_TEST_SEED=... reproduces). Shapes are not multiples of
// the kernel's 32-row / 32-latent tiles. Skipped, with the reason, without a CUDA device (the
// emulated device runs it: node scripts/test.mjs --emu test/cuda/kinds.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ShapeError, Tensor, ValueError, thresholdOps } from '@sparsify/core';

import { cudaAddon } from './cuda-env.js';
import { randn, rng } from './reference.js';

const { addon, skip } = cudaAddon();
const opts = { skip: skip ?? false };
const seed = Number(process.env.SPARSIFY_TEST_SEED ?? Math.floor(Math.random() * 1e9));
const tag = `(seed ${seed})`;

type Kind = 'standard' | 'jumprelu' | 'gated';
interface Case {
  N: number;
  D: number;
  M: number;
  w: { encW: Float32Array; gateBias: Float32Array; gateThreshold?: Float32Array; valueScale?: Float32Array; valueBias: Float32Array };
  x: Float32Array;
  bDec: Float32Array;
}

function makeCase(kind: Kind, N: number, D: number, M: number, r: () => number, biasShift = 0): Case {
  const f = (a: ArrayLike<number>, s = 1, b = 0) => Float32Array.from(a, (v) => v * s + b);
  const encW = f(randn(M * D, r), 1 / Math.sqrt(D));
  const b = f(randn(M, r), 0.3, biasShift);
  const w: Case['w'] = { encW, gateBias: b, valueBias: b };
  if (kind === 'jumprelu') w.gateThreshold = f(randn(M, r), 0.2, 0.3).map(Math.abs);
  if (kind === 'gated') {
    w.valueBias = f(randn(M, r), 0.3, biasShift);
    w.valueScale = f(randn(M, r), 0.5).map(Math.exp);
  }
  const x = f(randn(N * D, r));
  const bDec = f(randn(D, r), 0.1);
  // Row 0 is exactly b_dec: every g is 0, so it keeps latent m iff gateBias > threshold and valueBias > 0.
  x.set(bDec, 0);
  return { N, D, M, w, x, bDec };
}

/** Float64 rule (native/cpu/threshold_encode.h) on the f32 inputs: value, or NaN when dropped; and its margin. */
function reference(c: Case): { v: Float64Array; margin: Float64Array } {
  const { N, D, M, w } = c;
  const v = new Float64Array(N * M), margin = new Float64Array(N * M);
  for (let n = 0; n < N; n++)
    for (let m = 0; m < M; m++) {
      let g = 0;
      for (let d = 0; d < D; d++) g += (c.x[n * D + d] - c.bDec[d]) * w.encW[m * D + d];
      const gate = g + w.gateBias[m] - (w.gateThreshold ? w.gateThreshold[m] : 0);
      const val = g * (w.valueScale ? w.valueScale[m] : 1) + w.valueBias[m];
      v[n * M + m] = gate > 0 && val > 0 ? val : NaN;
      margin[n * M + m] = Math.min(Math.abs(gate), Math.abs(val));
    }
  return { v, margin };
}

const host = (c: Case, device?: 'cuda') => {
  const T = (a: Float32Array, s: number[]) => Tensor.from(a, s, device ? { device } : {});
  const w: thresholdOps.ThresholdWeights = { encW: T(c.w.encW, [c.M, c.D]), gateBias: T(c.w.gateBias, [c.M]), valueBias: T(c.w.valueBias, [c.M]) };
  if (c.w.gateThreshold) w.gateThreshold = T(c.w.gateThreshold, [c.M]);
  if (c.w.valueScale) w.valueScale = T(c.w.valueScale, [c.M]);
  return { w, x: T(c.x, [c.N, c.D]), bDec: T(c.bDec, [c.D]) };
};

interface Sparse {
  acts: Float32Array;
  idx: Int32Array;
  counts: Int32Array;
  width: number;
}
async function read(s: thresholdOps.SparseLatents): Promise<Sparse> {
  const h = async (t: Tensor) => (t.device === 'cuda' ? await t.to('cpu') : t);
  const a = await h(s.topActs), i = await h(s.topIndices), k = await h(s.counts);
  return { acts: a.toFloat32Array(), idx: i.toInt32Array(), counts: k.toInt32Array(), width: a.shape[1] };
}

/** The padded sparse rows agree with the float64 rule wherever it is decided by more than f32 rounding. */
function checkAgainstReference(name: string, c: Case, got: Sparse): void {
  const { v, margin } = reference(c);
  const tolOf = (n: number) => {
    let s = 0;
    for (let d = 0; d < c.D; d++) s += Math.abs(c.x[n * c.D + d] - c.bDec[d]);
    return 1e-5 * (1 + s);
  };
  let maxCount = 0;
  for (let n = 0; n < c.N; n++) {
    const cnt = got.counts[n], tol = tolOf(n);
    maxCount = Math.max(maxCount, cnt);
    const kept = new Map<number, number>();
    for (let j = 0; j < got.width; j++) {
      const m = got.idx[n * got.width + j], a = got.acts[n * got.width + j];
      if (j >= cnt) {
        assert.ok(m === 0 && a === 0, `${name}: row ${n} padding slot ${j} holds (${a}, ${m}) ${tag}`);
        continue;
      }
      assert.ok(j === 0 || m > got.idx[n * got.width + j - 1], `${name}: row ${n} is not in latent order at slot ${j} ${tag}`);
      kept.set(m, a);
    }
    for (let m = 0; m < c.M; m++) {
      const want = v[n * c.M + m], a = kept.get(m);
      if (margin[n * c.M + m] <= tol) continue;  // decided within rounding: either answer is right
      if (Number.isNaN(want)) assert.equal(a, undefined, `${name}: row ${n} latent ${m} kept (${a}) but the reference drops it ${tag}`);
      else {
        assert.notEqual(a, undefined, `${name}: row ${n} latent ${m} dropped but the reference keeps ${want} ${tag}`);
        assert.ok(Math.abs(a! - want) <= tol * 4, `${name}: row ${n} latent ${m}: ${a} vs reference ${want} ${tag}`);
      }
    }
  }
  assert.equal(got.width, Math.max(1, maxCount), `${name}: width is max(1, max count) ${tag}`);
}

for (const kind of ['standard', 'jumprelu', 'gated'] as Kind[]) {
  test(`${kind}: CUDA threshold encode equals the CPU kernel and the float64 reference`, opts, async () => {
    const r = rng(seed + kind.length);
    for (const [N, D, M] of [[37, 45, 70], [5, 16, 33], [1, 8, 1]]) {
      const c = makeCase(kind, N, D, M, r);
      const h = host(c);
      const cpu = await read(await cpuEncode(h));
      const gpu = await read(await cudaEncodeHost(h));
      checkAgainstReference(`${kind} ${N}x${D}x${M} cuda`, c, gpu);
      checkAgainstReference(`${kind} ${N}x${D}x${M} cpu`, c, cpu);
      // Both kernels are f32: values agree to f32 summation-order rounding, sets agree off the boundary.
      const { margin } = reference(c);
      for (let n = 0; n < N; n++) {
        const rowOf = (s: Sparse) => new Map(Array.from({ length: s.counts[n] }, (_, j) => [s.idx[n * s.width + j], s.acts[n * s.width + j]]));
        const a = rowOf(cpu), b = rowOf(gpu);
        for (const [m, v] of b) if (a.has(m)) assert.ok(Math.abs(a.get(m)! - v) <= 1e-5 * (1 + Math.abs(v)), `${kind}: row ${n} latent ${m}: cuda ${v} vs cpu ${a.get(m)} ${tag}`);
        for (const m of new Set([...a.keys(), ...b.keys()]))
          if (a.has(m) !== b.has(m)) assert.ok(margin[n * M + m] < 1e-4, `${kind}: row ${n} latent ${m}: cpu and cuda disagree off the boundary ${tag}`);
      }
    }
  });
}

async function cpuEncode(h: ReturnType<typeof host>): Promise<thresholdOps.SparseLatents> {
  return thresholdOps.thresholdEncode(h.w, h.x, h.bDec);  // host tensors: the CPU kernel
}
async function cudaEncodeHost(h: ReturnType<typeof host>): Promise<thresholdOps.SparseLatents> {
  const hs = (t?: Tensor) => t?.handle;
  const r = await addon!.cudaThresholdEncode(
    { encW: hs(h.w.encW), gateBias: hs(h.w.gateBias), gateThreshold: hs(h.w.gateThreshold), valueScale: hs(h.w.valueScale), valueBias: hs(h.w.valueBias) },
    h.x.handle, h.bDec.handle);
  return { topActs: new Tensor(r.acts), topIndices: new Tensor(r.indices), counts: new Tensor(r.counts) };
}

test('threshold encode: rows with no and with every latent active', opts, async () => {
  const r = rng(seed + 1);
  for (const [shift, want] of [[-100, 0], [100, 45]] as const) {
    const c = makeCase('standard', 33, 20, 45, r, shift);
    const got = await read(await cudaEncodeHost(host(c)));
    assert.deepEqual([...got.counts], new Array(33).fill(want), `bias ${shift}: every row keeps ${want} latents ${tag}`);
    assert.equal(got.width, Math.max(1, want));
    checkAgainstReference(`bias ${shift}`, c, got);
  }
});

test('thresholdOps.thresholdEncode on cuda tensors runs the CUDA kernel; results stay on the device', opts, async () => {
  const c = makeCase('jumprelu', 40, 24, 65, rng(seed + 2));
  const d = host(c, 'cuda');
  const out = await thresholdOps.thresholdEncode(d.w, d.x, d.bDec);
  for (const t of [out.topActs, out.topIndices, out.counts]) assert.equal(t.device, 'cuda');
  const fromDevice = await read(out), fromHost = await read(await cudaEncodeHost(host(c)));
  assert.deepEqual(fromDevice, fromHost, 'device and host inputs give the same result');
  checkAgainstReference('device tensors', c, fromDevice);
});

test('CUDA threshold encode: bad shapes, dtypes and values are typed errors', opts, async () => {
  const c = makeCase('gated', 4, 8, 10, rng(seed + 3));
  const h = host(c);
  await assert.rejects(thresholdOps.thresholdEncode(h.w, Tensor.zeros([4, 7], { device: 'cuda' })), (e) => e instanceof ShapeError && /x must be \[tokens, 8\]/.test((e as Error).message));
  await assert.rejects(thresholdOps.thresholdEncode({ ...h.w, gateBias: Tensor.zeros([9]) }, Tensor.zeros([4, 8], { device: 'cuda' })), (e) => e instanceof ShapeError && /gate bias/.test((e as Error).message));
  await assert.rejects(thresholdOps.thresholdEncode({ ...h.w, valueScale: Tensor.zeros([10], { dtype: 'int32' }) }, Tensor.zeros([4, 8], { device: 'cuda' })), /value scale/);
  const bad = Float32Array.from(c.x);
  bad[13] = NaN;
  await assert.rejects(thresholdOps.thresholdEncode(h.w, Tensor.from(bad, [4, 8], { device: 'cuda' })), (e) => e instanceof ValueError && /first at flat index 13/.test((e as Error).message));
});

test('the kinds\' start-up check (native/cuda/self_test_kinds.cu) passes on this device', opts, () => {
  const r = addon!.testing.cudaSelfTestKinds();
  assert.deepEqual(r, { ok: true }, `cudaSelfTestKinds: ${r.error}`);
});
