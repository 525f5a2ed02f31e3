// The forward's element-wise kernels and attention on every kernel variant this CPU runs
// (SPARSIFY_GEMM / gemmForceKernels pin the vector math with the GEMM). The AVX-512 activations
// compute the AVX2 formulas lane for lane, so the two are bitwise equal; attention's softmax
// regroups its sums, so it is checked against the double-accumulating reference.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';

import { gemmAvailableKernels, gemmForceKernels, native, Tensor } from '@sparsify/core';
import { relErr } from './helpers.js';

type KernelSet = 'avx512' | 'avx2' | 'portable';
const KERNELS = gemmAvailableKernels() as KernelSet[];

after(() => {
  gemmForceKernels('auto');
});

const REF: Record<string, (x: number) => number> = {
  gelu_tanh: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
  silu: (x) => x / (1 + Math.exp(-x)),
};

// -12..12 in steps of 0.01 plus large magnitudes; 2413 values (a tail past the 16-wide vectors).
const xs: number[] = [0, -0, 1e-30, 100, -100, 88, -88, 90, -90, 1e4, -1e4, 3.5];
for (let i = 0; i <= 2400; i++) xs.push(-12 + i * 0.01);
const x = Tensor.from(Float32Array.from(xs), [xs.length]);

function activation(name: string): Float32Array {
  return new Tensor(native().testing.modelActivation(x.handle, name)).toFloat32Array();
}

test(`activations on every kernel variant (${KERNELS.join(', ')}); AVX-512 bitwise equal to AVX2`, () => {
  const xf = x.toFloat32Array();
  const byKernel = new Map<KernelSet, Map<string, Float32Array>>();
  for (const kernels of KERNELS) {
    gemmForceKernels(kernels);
    const outs = new Map<string, Float32Array>();
    for (const name of ['gelu_tanh', 'silu', 'gelu', 'gelu_fast', 'quick_gelu', 'relu']) outs.set(name, activation(name));
    byKernel.set(kernels, outs);
    for (const [name, f] of Object.entries(REF)) {
      const y = outs.get(name)!;
      for (let i = 0; i < xf.length; i++) {
        const err = Math.abs(y[i] - f(xf[i]));
        assert.ok(Number.isFinite(y[i]) && err <= 2e-6 * Math.max(1, Math.abs(xf[i])), `${kernels} ${name}(${xf[i]}) = ${y[i]}`);
      }
    }
    // The exact GELU against GELU-tanh's neighbourhood: the two differ by < 1e-3 everywhere.
    const g = outs.get('gelu')!, gt = outs.get('gelu_tanh')!;
    for (let i = 0; i < xf.length; i++) if (Math.abs(xf[i]) < 20) assert.ok(Math.abs(g[i] - gt[i]) < 1e-3, `${kernels} gelu(${xf[i]})`);
  }
  const a = byKernel.get('avx512'), b = byKernel.get('avx2');
  if (a && b)
    for (const [name, ya] of a) {
      const ua = new Uint32Array(ya.buffer), ub = new Uint32Array(b.get(name)!.buffer);
      for (let i = 0; i < ua.length; i++) assert.equal(ua[i], ub[i], `${name}(${xs[i]}): avx512 ${ya[i]} vs avx2 ${b.get(name)![i]}`);
    }
});

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  return Float32Array.from({ length: n }, () => {
    s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
    return ((s >>> 0) / 4294967296 - 0.5) * 4;
  });
}

const cases = [
  { batch: 2, T: 147, heads: 4, kvHeads: 2, D: 16, scale: 0.25, softcap: 0, window: 0 },
  { batch: 1, T: 203, heads: 2, kvHeads: 1, D: 32, scale: 0.18, softcap: 30, window: 77 },
];

for (const kernels of KERNELS)
  test(`attention on the ${kernels} variant matches the reference`, async () => {
    gemmForceKernels(kernels);
    for (const c of cases) {
      const rows = c.batch * c.T;
      const q = Tensor.from(rand(rows * c.heads * c.D, 11 + c.T), [rows, c.heads * c.D]);
      const k = Tensor.from(rand(rows * c.kvHeads * c.D, 12 + c.T), [rows, c.kvHeads * c.D]);
      const v = Tensor.from(rand(rows * c.kvHeads * c.D, 13 + c.T), [rows, c.kvHeads * c.D]);
      const opts = { batch: c.batch, heads: c.heads, kvHeads: c.kvHeads, scale: c.scale, softcap: c.softcap, window: c.window };
      const got = new Tensor(await native().testing.modelAttention(q.handle, k.handle, v.handle, opts)).toFloat32Array();
      const ref = new Tensor(await native().testing.modelAttention(q.handle, k.handle, v.handle, { ...opts, reference: true })).toFloat32Array();
      const e = relErr(got, ref);
      assert.ok(e < 1e-5, `${kernels} ${JSON.stringify(c)}: relative error ${e}`);
    }
  });
