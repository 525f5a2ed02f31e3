import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { FileFormatError, loadOptimizerState, native, saveOptimizerState, Tensor, ValueError, type OptimizerState } from '@sparsify/core';
import {
  gatherRows,
  loadInt64Safetensors,
  saveInt64Safetensors,
  InMemoryTokenDataset,
} from '@sparsify/train';
import { DeadLatentCounter } from './dead-latent-reference.ts';

const tmp = () => mkdtempSync(join(tmpdir(), 'spx-train-'));

test('dead-latent counters: += tokens per step, fired -> 0, dead when > threshold', () => {
  const c = new DeadLatentCounter(4, 1000);
  c.update(512, [1, 0, 0, 0]);
  assert.deepEqual([...c.counts], [0, 512, 512, 512]);
  c.update(512, [0, 1, 0, 0]);
  assert.deepEqual([...c.counts], [512, 0, 1024, 1024]);
  assert.equal(c.numDead(), 2);
  assert.deepEqual([...c.deadMask()], [0, 0, 1, 1]);
  c.update(512, [0, 0, 1, 0]);
  assert.deepEqual([...c.counts], [1024, 512, 0, 1536]);
  assert.equal(c.deadFraction(), 0.5);
  // exact beyond 2^31 tokens
  const big = new DeadLatentCounter(1, 10, new Float64Array([2 ** 40]));
  big.update(3, [0]);
  assert.equal(big.counts[0], 2 ** 40 + 3);
});

test('int64 safetensors round-trip (counters beyond int32)', () => {
  const d = tmp();
  const p = join(d, 'c.safetensors');
  saveInt64Safetensors(p, new Map([['h.0', new Float64Array([0, 5, 2 ** 40])], ['h.1/seed3', new Float64Array([7])]]));
  const back = loadInt64Safetensors(p);
  assert.deepEqual([...back.get('h.0')!], [0, 5, 2 ** 40]);
  assert.deepEqual([...back.get('h.1/seed3')!], [7]);
  // It is a standard safetensors file: header says I64.
  const len = Number(readFileSync(p).readBigUInt64LE(0));
  const header = JSON.parse(readFileSync(p).subarray(8, 8 + len).toString());
  assert.equal(header['h.0'].dtype, 'I64');
});

test('optimizer state files round-trip (tensors, non-finite scalars, maps) and reject other files', () => {
  const d = tmp();
  const state: OptimizerState = {
    kind: 'signum',
    tensors: new Map([
      ['0.W_dec.z', Tensor.from(new Float32Array([4, 5]), [1, 2])],
      ['0.b_dec.z', Tensor.from(new Float32Array([1, 2, 3]), [3])],
    ]),
    scalars: { lr: [0.0123], groups: [{ k: 2, lr_max: 0.0123, weight_sum: Infinity }], trainMode: false },
  };
  saveOptimizerState(join(d, 'optimizer_0'), state);
  const back = loadOptimizerState(join(d, 'optimizer_0'));
  assert.equal(back.kind, 'signum');
  assert.deepEqual(back.scalars, state.scalars);
  assert.deepEqual([...back.tensors.keys()], ['0.W_dec.z', '0.b_dec.z']);
  assert.deepEqual(back.tensors.get('0.W_dec.z')!.shape, [1, 2]);
  assert.deepEqual([...back.tensors.get('0.W_dec.z')!.toFloat32Array()], [4, 5]);
  assert.deepEqual([...back.tensors.get('0.b_dec.z')!.toFloat32Array()], [1, 2, 3]);
  writeFileSync(join(d, 'other.json'), '{"step": 3}');
  assert.throws(() => loadOptimizerState(join(d, 'other')), FileFormatError);
});

test('gatherRows / row views (the micro-batch slices) / totalVariance against plain JS', async () => {
  const N = 37, D = 5;
  const x = new Float32Array(N * D).map((_, i) => Math.sin(i * 0.7) * 3 + (i % D));
  const t = Tensor.from(x, [N, D]);
  const idx = [3, 0, 36, 3, 17];
  const g = await gatherRows(t, Tensor.from(Int32Array.from(idx), [idx.length]));
  assert.deepEqual(g.shape, [idx.length, D]);
  const gv = g.toFloat32Array();
  idx.forEach((r, i) => assert.deepEqual([...gv.subarray(i * D, (i + 1) * D)], [...x.subarray(r * D, (r + 1) * D)]));
  await assert.rejects(gatherRows(t, Tensor.from(Int32Array.from([N]), [1])), ValueError);
  const rowSlice = (a: Tensor, b: number, e: number) => new Tensor(native().trainRowSlice(a.handle, b, e));
  const s = rowSlice(t, 10, 20);
  assert.deepEqual(s.shape, [10, D]);
  assert.deepEqual([...s.toFloat32Array()], [...x.subarray(10 * D, 20 * D)]);
  assert.throws(() => rowSlice(t, 5, N + 1), ValueError);
  let ref = 0;
  for (let d = 0; d < D; d++) {
    let m = 0;
    for (let n = 0; n < N; n++) m += x[n * D + d];
    m /= N;
    for (let n = 0; n < N; n++) ref += (x[n * D + d] - m) ** 2;
  }
  const tv = await native().trainTotalVariance(t.handle); // the micro-batch normaliser (batchVariance)
  assert.ok(Math.abs(tv - ref) <= 1e-9 * ref, `${tv} vs ${ref}`);
});

test('InMemoryTokenDataset: epochs, deterministic shuffles, max_examples', () => {
  const T = 4;
  const tokens = Int32Array.from({ length: 5 * T }, (_, i) => Math.floor(i / T));
  const ds = new InMemoryTokenDataset(tokens, T, { epochs: 2, shuffleSeed: 42 });
  assert.equal(ds.length, 10);
  const rows = [...Array(10).keys()].map((i) => ds.rows([i])[0]);
  assert.deepEqual([...rows.slice(0, 5)].sort(), [0, 1, 2, 3, 4]);
  assert.deepEqual([...rows.slice(5)].sort(), [0, 1, 2, 3, 4]);
  const again = new InMemoryTokenDataset(tokens, T, { epochs: 2, shuffleSeed: 42 });
  assert.deepEqual([...again.rows([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])], [...ds.rows([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])]);
  assert.equal(new InMemoryTokenDataset(tokens, T, { maxExamples: 3 }).length, 3);
  assert.throws(() => ds.rows([10]), RangeError);
});
