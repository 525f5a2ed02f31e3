// The optimizer updates on every kernel variant this CPU runs (SPARSIFY_GEMM / gemmForceKernels pin
// the AVX-512 and scalar element-wise loops with the GEMM): Adam, schedule-free signum and Muon's
// momentum are bitwise equal to the portable loop (same op order, no FMA contraction), and match
// the float64 references. Sizes with a remainder past the 16-wide vectors reach the scalar tails.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';

import { gemmAvailableKernels, gemmForceKernels, native, Rng, Tensor } from '@sparsify/core';

import { relErrToMax } from './helpers.js';

type KernelSet = 'avx512' | 'avx2' | 'portable';
const KERNELS = gemmAvailableKernels() as KernelSet[];
const ROWS = 7, COLS = 37; // 259 elements: 16 full vectors and a tail of 3

after(() => {
  gemmForceKernels('auto');
});

function normal(seed: number, n: number, scale = 1): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

interface Case {
  name: string;
  kind: 'adam' | 'signum' | 'muon';
  hyper: Record<string, number | boolean>;
  slots: number;
  project?: boolean;
}

const CASES: Case[] = [
  { name: 'adam (1 - beta1 < 0.5)', kind: 'adam', hyper: { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8 }, slots: 2 },
  { name: 'adam (1 - beta1 >= 0.5), projected', kind: 'adam', hyper: { lr: 1e-2, beta1: 0.3, beta2: 0.99, eps: 1e-8 }, slots: 2, project: true },
  { name: 'signum (ckp1 < 0.5)', kind: 'signum', hyper: { lr: 0.01, momentum: 0.95, ckp1: 0.25 }, slots: 1 },
  { name: 'signum (ckp1 >= 0.5)', kind: 'signum', hyper: { lr: 0.01, momentum: 0.9, ckp1: 0.75 }, slots: 1 },
  { name: 'muon (nesterov, weight decay)', kind: 'muon', hyper: { lr: 2e-3, momentum: 0.95, nesterov: true, weightDecay: 0.1, nsSteps: 5 }, slots: 1 },
  { name: 'muon (plain momentum)', kind: 'muon', hyper: { lr: 2e-3, momentum: 0.6, nesterov: false, weightDecay: 0, nsSteps: 5 }, slots: 1 },
];

const n = ROWS * COLS;
const p0 = normal(1, n, 0.5);
const g0 = normal(2, n);
g0[5] = 0; // sign(0) = 0 in signum
const g1 = normal(3, n, 2);

/** Two steps on fresh tensors; returns the parameter, the state slots and the first step's values. */
async function run(c: Case, kernels: KernelSet) {
  gemmForceKernels(kernels);
  const p = Tensor.from(p0.slice(), [ROWS, COLS]);
  const state = Array.from({ length: c.slots }, () => (c.kind === 'signum' ? Tensor.from(p0.slice(), [ROWS, COLS]) : Tensor.zeros([ROWS, COLS])));
  const first: Float32Array[] = [];
  for (const [step, g] of [g0, g1].entries()) {
    const grad = Tensor.from(g.slice(), [ROWS, COLS]);
    await native().testing.optimStep([{ ...c.hyper, kind: c.kind, param: p.handle, grad: grad.handle, project: c.project ?? false, state: state.map((s) => s.handle), step: step + 1 }]);
    assert.ok(grad.toFloat32Array().every((v) => v === 0), `${kernels}: grads zeroed`);
    if (step === 0) first.push(p.toFloat32Array(), ...state.map((s) => s.toFloat32Array()));
  }
  return { p: p.toFloat32Array(), state: state.map((s) => s.toFloat32Array()), first };
}

function bitwiseEqual(a: Float32Array, b: Float32Array, what: string) {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length), ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) assert.equal(ua[i], ub[i], `${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

/** g - <g,w>w per row (what the optimizer applies to decoder grads with project). */
function project(g: Float32Array, w: Float32Array): Float64Array {
  const out = Float64Array.from(g);
  for (let r = 0; r < ROWS; r++) {
    let c = 0;
    for (let j = 0; j < COLS; j++) c += g[r * COLS + j] * w[r * COLS + j];
    for (let j = 0; j < COLS; j++) out[r * COLS + j] -= c * w[r * COLS + j];
  }
  return out;
}

for (const c of CASES) {
  test(`${c.name}: every kernel variant (${KERNELS.join(', ')}) against portable and the float64 reference`, async () => {
    const base = await run(c, 'portable');
    // First step against the float64 reference (from the same f32 inputs).
    const g = c.project ? project(g0, p0) : Float64Array.from(g0);
    const arrays: Record<string, Float64Array> = { p: Float64Array.from(p0), g, s0: c.kind === 'signum' ? Float64Array.from(p0) : new Float64Array(n) };
    if (c.slots === 2) arrays.s1 = new Float64Array(n);
    const ref = native().testing.optimReference(c.kind, arrays, { ...c.hyper, step: 1, rows: ROWS, cols: COLS });
    if (c.kind === 'muon') {
      // Newton-Schulz runs in f32 through the GEMM: compare the update, as test/sae/optim.test.ts does.
      const upd = base.first[0].map((v, i) => v - p0[i]);
      const refUpd = ref.p.map((v: number, i: number) => v - p0[i]);
      assert.ok(relErrToMax(upd, refUpd) < 2e-3, `muon update vs reference: ${relErrToMax(upd, refUpd)}`);
      assert.ok(relErrToMax(base.first[1], ref.s0) < 1e-6, 'muon momentum vs reference');
    } else {
      assert.ok(relErrToMax(base.first[0], ref.p) < 1e-5, `p vs reference: ${relErrToMax(base.first[0], ref.p)}`);
      assert.ok(relErrToMax(base.first[1], ref.s0) < 1e-5, 's0 vs reference');
      if (c.slots === 2) assert.ok(relErrToMax(base.first[2], ref.s1) < 1e-5, 's1 vs reference');
    }
    for (const kernels of KERNELS) {
      const got = await run(c, kernels);
      // Muon's parameter goes through the variant's GEMM (Newton-Schulz): its momentum is element-wise.
      if (c.kind === 'muon') assert.ok(relErrToMax(got.p, base.p) < 1e-5, `${kernels}: muon p`);
      else bitwiseEqual(got.p, base.p, `${kernels} p`);
      for (const [i, s] of got.state.entries()) bitwiseEqual(s, base.state[i], `${kernels} state ${i}`);
    }
  });
}
