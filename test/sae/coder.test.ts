// SparseCoder API: create/save/load round trips (f32 and bf16 files), loadMany ordering,
// decoder: false, bias init, and typed errors for bad input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import {
  DisposedError, DTypeError, FileFormatError, loadSafetensors, Rng, saeOps, testing, saveSafetensors, ShapeError, SparseCoder, Sae, Tensor, ValueError, ConfigError,
} from '@sparsify/core';

import { FIXTURES, loadGolden, relErrToMax } from './helpers.js';

function randn(n: number, seed: number): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => r.normal());
}

test('create is seeded and follows the init rule; save/load round-trips exactly', async () => {
  const a = await SparseCoder.create(32, { expansionFactor: 4, k: 8 }, { seed: 3 });
  const b = await Sae.create(32, { expansionFactor: 4, k: 8 }, { seed: 3 });
  const c = await SparseCoder.create(32, { expansionFactor: 4, k: 8 }, { seed: 4 });
  assert.equal(a.numLatents, 128);
  assert.deepEqual(a.params().get('encoder.weight')!.toFloat32Array(), b.params().get('encoder.weight')!.toFloat32Array());
  assert.notDeepEqual(a.params().get('encoder.weight')!.toFloat32Array(), c.params().get('encoder.weight')!.toFloat32Array());
  const dir = mkdtempSync(join(tmpdir(), 'sae-save-'));
  try {
    const x = Tensor.from(randn(20 * 32, 1), [20, 32]);
    await a.initBiasesFromBatch(x);
    await a.forwardBackward(x, { auxkAlpha: 0 });
    await a.saveToDisk(join(dir, 'h.0'));
    assert.equal(readFileSync(join(dir, 'h.0', 'cfg.json'), 'utf-8'),
      '{"activation": "topk", "expansion_factor": 4, "normalize_decoder": true, "num_latents": 0, "k": 8, "multi_topk": false, "skip_connection": false, "transcode": false, "d_in": 32}');
    const re = await SparseCoder.loadFromDisk(join(dir, 'h.0'));
    for (const [name, t] of a.params()) assert.deepEqual(re.params().get(name)!.toFloat32Array(), t.toFloat32Array(), name);
    const f1 = await a.forward(x);
    const f2 = await re.forward(x);
    assert.deepEqual(f2.saeOut.toFloat32Array(), f1.saeOut.toFloat32Array());
    assert.equal(f1.fvu, f2.fvu);
    // b_dec = mean_0(x) after initBiasesFromBatch.
    const xs = x.toFloat32Array();
    const bd = a.params().get('b_dec')!.toFloat32Array();
    for (let d = 0; d < 32; d++) {
      let mu = 0;
      for (let n = 0; n < 20; n++) mu += xs[n * 32 + d];
      assert.ok(Math.abs(bd[d] - mu / 20) < 1e-6);
    }
    // bf16 file: loads, computes in f32.
    const bdir = join(dir, 'h.10');
    mkdirSync(bdir);
    cpSync(join(dir, 'h.0', 'cfg.json'), join(bdir, 'cfg.json'));
    const t16 = new Map<string, Tensor>();
    for (const [name, t] of a.params()) t16.set(name, Tensor.from(t.toFloat32Array(), t.shape, { dtype: 'bfloat16' }));
    saveSafetensors(join(bdir, 'sae.safetensors'), t16);
    const bf = await SparseCoder.loadFromDisk(bdir);
    assert.equal(bf.params().get('W_dec')!.dtype, 'float32');
    assert.ok(relErrToMax(bf.params().get('W_dec')!.toFloat32Array(), a.params().get('W_dec')!.toFloat32Array()) < 1e-2);
    // loadMany: natural order, decoder=false.
    mkdirSync(join(dir, 'h.2'));
    await c.saveToDisk(join(dir, 'h.2'));
    mkdirSync(join(dir, '.cache'));
    const many = await SparseCoder.loadMany(dir, { local: true, decoder: false });
    assert.deepEqual([...many.keys()], ['h.0', 'h.2', 'h.10']);
    const enc = many.get('h.0')!;
    assert.ok(!enc.params().has('W_dec'));
    const e1 = await enc.encode(x);
    const e2 = await a.encode(x);
    assert.deepEqual(e1.topIndices.toInt32Array(), e2.topIndices.toInt32Array());
    await assert.rejects(enc.decode(e1.topActs, e1.topIndices), ValueError);
    await assert.rejects(enc.forward(x), ValueError);
    const some = await SparseCoder.loadMany(dir, { local: true, pattern: 'h.1*' });
    assert.deepEqual([...some.keys()], ['h.10']);
    for (const m of [...many.values(), ...some.values()]) m.dispose();
    for (const m of [a, b, c, re, bf]) m.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('transcoder bias init: encoder.bias = -(mean(x) W_enc^T), b_dec = mean(y)', async () => {
  const t = await SparseCoder.create(8, { numLatents: 32, k: 4, transcode: true }, { seed: 1 });
  assert.ok(t.params().get('W_dec')!.toFloat32Array().every((v) => v === 0));
  const x = Tensor.from(randn(10 * 8, 2), [10, 8]);
  const y = Tensor.from(randn(10 * 8, 3), [10, 8]);
  await t.initBiasesFromBatch(x, y);
  const xs = x.toFloat32Array(), ys = y.toFloat32Array();
  const W = t.params().get('encoder.weight')!.toFloat32Array();
  const be = t.params().get('encoder.bias')!.toFloat32Array();
  const bd = t.params().get('b_dec')!.toFloat32Array();
  const mx = new Float64Array(8), my = new Float64Array(8);
  for (let n = 0; n < 10; n++) for (let d = 0; d < 8; d++) { mx[d] += xs[n * 8 + d] / 10; my[d] += ys[n * 8 + d] / 10; }
  for (let d = 0; d < 8; d++) assert.ok(Math.abs(bd[d] - my[d]) < 1e-6);
  for (let m = 0; m < 32; m++) {
    let acc = 0;
    for (let d = 0; d < 8; d++) acc += mx[d] * W[m * 8 + d];
    assert.ok(Math.abs(be[m] + acc) < 1e-6);
  }
  t.dispose();
});

test('bad input gives typed errors naming the problem', async () => {
  const c = await SparseCoder.create(16, { numLatents: 64, k: 4 }, { seed: 0 });
  const x = Tensor.from(randn(5 * 16, 1), [5, 16]);
  await assert.rejects(c.encode(Tensor.from(randn(5 * 8, 1), [5, 8])), (e: Error) => e instanceof ShapeError && /x must be \[tokens, 16\]/.test(e.message));
  await assert.rejects(c.encode(Tensor.from(randn(16, 1), [16])), ShapeError);
  await assert.rejects(c.encode(Tensor.from(randn(5 * 16, 1), [5, 16], { dtype: 'bfloat16' })), DTypeError);
  await assert.rejects(c.forward(x, { y: Tensor.from(randn(4 * 16, 1), [4, 16]) }), (e: Error) => e instanceof ShapeError && /y has 4 rows/.test(e.message));
  const nan = randn(5 * 16, 1);
  nan[17] = NaN;
  await assert.rejects(c.encode(Tensor.from(nan, [5, 16])), (e: Error) => e instanceof ValueError && /x contains NaN/.test(e.message));
  await assert.rejects(c.forwardBackward(x, { y: Tensor.from(nan, [5, 16]), auxkAlpha: 0 }), (e: Error) => e instanceof ValueError && /y contains NaN/.test(e.message));
  await assert.rejects(c.forward(x, { deadMask: new Uint8Array(63) }), (e: Error) => e instanceof ShapeError && /deadMask/.test(e.message));
  await assert.rejects(c.forwardBackward(x, { auxkAlpha: -1 }), ValueError);
  const e = await c.encode(x);
  await assert.rejects(c.decode(e.topActs, Tensor.from(new Int32Array(20).fill(64), [5, 4])), (err: Error) => err instanceof ValueError && /outside \[0, 64\)/.test(err.message));
  await assert.rejects(c.decode(e.topActs, Tensor.from(new Int32Array(15), [5, 3])), ShapeError);
  c.cfg.k = 65;
  await assert.rejects(c.encode(x), (err: Error) => err instanceof ValueError && /k must be/.test(err.message));
  c.cfg.k = 4;
  const disposedX = Tensor.from(randn(5 * 16, 1), [5, 16]);
  disposedX.dispose();
  await assert.rejects(c.encode(disposedX), DisposedError);
  await assert.rejects(SparseCoder.create(16, { numLatents: 60, k: 8, activation: 'groupmax' }), (err: Error) => err instanceof ValueError && /divisible/.test(err.message));
  await assert.rejects(SparseCoder.create(16, { numLatents: 64, k: 32, multiTopk: true }), ValueError);
  await assert.rejects(SparseCoder.create(16, { k: 0 }), ConfigError);
  await assert.rejects(SparseCoder.loadFromDisk(join(FIXTURES, 'nope')), FileFormatError);
  // Kernels never write into read-only (memory-mapped) tensors.
  const mapped = loadSafetensors(join(FIXTURES, 'sae_d64_k8', 'state', 'sae.safetensors'));
  await assert.rejects(testing.normalizeDecoder(mapped.get('W_dec')!), (err: Error) => err instanceof ValueError && /read-only/.test(err.message));
  const enc = await saeOps.saeEncode({ encW: mapped.get('encoder.weight')!, encB: mapped.get('encoder.bias')!, b_dec: mapped.get('b_dec')! }, Tensor.zeros([2, 64]), { k: 8, groupmax: false, transcode: false, multiTopk: false });
  assert.deepEqual(enc.indices.shape, [2, 8]); // reading mapped weights is fine
  c.dispose();
  await assert.rejects(c.encode(x), DisposedError);
  assert.throws(() => c.params(), DisposedError);
});

test('groupmax selects the argmax of each contiguous group; ties go to the lower index', async () => {
  const g = loadGolden('sae_d64_k8_groupmax');
  const c = await SparseCoder.loadFromDisk(join(FIXTURES, 'sae_d64_k8_groupmax', 'state'));
  const r = await c.encode(g.get('x')!, { returnPreActs: true });
  const pre = r.preActs!.toFloat32Array();
  const idx = r.topIndices.toInt32Array();
  const G = 512 / 8;
  for (let n = 0; n < 64; n++)
    for (let j = 0; j < 8; j++) {
      const i = idx[n * 8 + j];
      assert.equal(Math.floor(i / G), j);
      for (let m = j * G; m < (j + 1) * G; m++) assert.ok(pre[n * 512 + m] < pre[n * 512 + i] || (pre[n * 512 + m] === pre[n * 512 + i] && m >= i));
    }
  // All-zero pre-activations (huge negative bias): ties everywhere -> lowest indices, values 0.
  const z = await SparseCoder.create(4, { numLatents: 16, k: 4 }, { seed: 0 });
  const zx = Tensor.from(new Float32Array(8).fill(0), [2, 4]);
  const zr = await z.encode(zx);
  assert.deepEqual([...zr.topIndices.toInt32Array()].slice(0, 4), [0, 1, 2, 3]);
  c.dispose();
  z.dispose();
});

test('loadFromHub / loadMany resolve through the HF cache (offline)', async () => {
  const cache = mkdtempSync(join(tmpdir(), 'sae-hub-'));
  const old = process.env.HF_HUB_OFFLINE;
  process.env.HF_HUB_OFFLINE = '1';
  try {
    const commit = 'a'.repeat(40);
    const base = join(cache, 'models--org--saes');
    mkdirSync(join(base, 'refs'), { recursive: true });
    writeFileSync(join(base, 'refs', 'main'), commit);
    const snap = join(base, 'snapshots', commit);
    for (const layer of ['layers.10', 'layers.2']) cpSync(join(FIXTURES, 'sae_d64_k8', 'state'), join(snap, layer), { recursive: true });
    const one = await SparseCoder.loadFromHub('org/saes', { hookpoint: 'layers.2', cacheDir: cache });
    assert.equal(one.numLatents, 512);
    await assert.rejects(SparseCoder.loadFromHub('org/saes', { cacheDir: cache }), (e: Error) => e instanceof FileFormatError && /hookpoint/.test(e.message));
    const many = await SparseCoder.loadMany('org/saes', { cacheDir: cache });
    assert.deepEqual([...many.keys()], ['layers.2', 'layers.10']);
    const picked = await SparseCoder.loadMany('org/saes', { cacheDir: cache, layers: ['layers.10'] });
    assert.deepEqual([...picked.keys()], ['layers.10']);
    for (const c of [one, ...many.values(), ...picked.values()]) c.dispose();
  } finally {
    if (old === undefined) delete process.env.HF_HUB_OFFLINE;
    else process.env.HF_HUB_OFFLINE = old;
    rmSync(cache, { recursive: true, force: true });
  }
});
