// The forward's vectorised activations against double-precision formulas, over a range that
// includes large magnitudes (where exp overflows or underflows) and vector tails.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Tensor, native } from '@sparsify/core';

function erf(x: number): number {
  // 2/sqrt(pi) * integral_0^x exp(-t^2) dt by composite Simpson (error far below f32 precision).
  if (x === 0) return 0;
  if (Math.abs(x) > 6) return Math.sign(x); // 1 - erf(6) < 3e-17
  const n = 4000, h = x / n;
  let s = 1 + Math.exp(-x * x);
  for (let i = 1; i < n; i++) s += (i % 2 ? 4 : 2) * Math.exp(-((i * h) ** 2));
  return Math.min(1, Math.max(-1, ((s * h) / 3) * (2 / Math.sqrt(Math.PI))));
}

const REF: Record<string, (x: number) => number> = {
  gelu_tanh: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
  gelu_fast: (x) => 0.5 * x * (1 + Math.tanh(0.7978845608 * x * (1 + 0.044715 * x * x))),
  gelu: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  silu: (x) => x / (1 + Math.exp(-x)),
  quick_gelu: (x) => x / (1 + Math.exp(-1.702 * x)),
  relu: (x) => Math.max(0, x),
};

test('activations match double-precision formulas', () => {
  const xs: number[] = [0, -0, 1e-30, -1e-30, 100, -100, 1e4, -1e4, 88, -88, 90, -90];
  for (let i = 0; i < 3001; i++) xs.push(-15 + i * 0.01);
  const x = Tensor.from(Float32Array.from(xs), [xs.length]);
  const xf = x.toFloat32Array();
  for (const [name, f] of Object.entries(REF)) {
    const y = new Tensor(native().testing.modelActivation(x.handle, name)).toFloat32Array();
    for (let i = 0; i < xf.length; i++) {
      const want = f(xf[i]);
      const err = Math.abs(y[i] - want);
      // relative to max(|x|, 1): activations are O(x) for large x and O(1e-7) precise near 0
      assert.ok(Number.isFinite(y[i]) && err <= 2e-6 * Math.max(1, Math.abs(xf[i])), `${name}(${xf[i]}) = ${y[i]}, want ${want}`);
    }
  }
  assert.throws(() => native().testing.modelActivation(x.handle, 'mish'), /unknown activation 'mish'/);
});
