// The forward's attention kernel (blocked GEMMs per (batch, head)) against its plain
// double-accumulating reference, over shapes the model fixtures do not reach: sequences across
// several 64-row blocks, windows that cross block edges, GQA/MQA, soft-capping.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Tensor, native } from '@sparsify/core';
import { relErr } from './helpers.js';

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  return Float32Array.from({ length: n }, () => {
    s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
    return ((s >>> 0) / 4294967296 - 0.5) * 4;
  });
}

const cases = [
  { batch: 2, T: 200, heads: 4, kvHeads: 2, D: 16, scale: 0.25, softcap: 0, window: 0 },
  { batch: 1, T: 130, heads: 3, kvHeads: 1, D: 24, scale: 0.2, softcap: 0, window: 37 },
  { batch: 3, T: 64, heads: 2, kvHeads: 2, D: 8, scale: 0.35, softcap: 5, window: 0 },
  { batch: 1, T: 257, heads: 2, kvHeads: 1, D: 32, scale: 0.18, softcap: 50, window: 100 },
  { batch: 2, T: 1, heads: 1, kvHeads: 1, D: 4, scale: 1, softcap: 0, window: 0 },
  { batch: 1, T: 70, heads: 2, kvHeads: 2, D: 16, scale: 0.25, softcap: 0, window: 1 },
];

for (const c of cases) {
  test(`attention matches the reference: ${JSON.stringify(c)}`, async () => {
    const rows = c.batch * c.T;
    const q = Tensor.from(rand(rows * c.heads * c.D, 1 + c.T), [rows, c.heads * c.D]);
    const k = Tensor.from(rand(rows * c.kvHeads * c.D, 2 + c.T), [rows, c.kvHeads * c.D]);
    const v = Tensor.from(rand(rows * c.kvHeads * c.D, 3 + c.T), [rows, c.kvHeads * c.D]);
    const opts = { batch: c.batch, heads: c.heads, kvHeads: c.kvHeads, scale: c.scale, softcap: c.softcap, window: c.window };
    const got = new Tensor(await native().testing.modelAttention(q.handle, k.handle, v.handle, opts)).toFloat32Array();
    const ref = new Tensor(await native().testing.modelAttention(q.handle, k.handle, v.handle, { ...opts, reference: true })).toFloat32Array();
    const e = relErr(got, ref);
    assert.ok(e < 1e-5, `relative error ${e}`);
    if (c.window === 1) {
      // A window of 1 attends to the token itself only: the output is v of that token.
      const vv = v.toFloat32Array();
      for (let r = 0; r < rows; r++)
        for (let h = 0; h < c.heads; h++)
          for (let d = 0; d < c.D; d++) assert.ok(Math.abs(got[r * c.heads * c.D + h * c.D + d] - vv[r * c.kvHeads * c.D + Math.floor(h / (c.heads / c.kvHeads)) * c.D + d]) < 1e-5);
    }
  });
}
