// Global gradient-norm clipping (torch's clip_grad_norm_, SAELens's max_grad_norm): the native
// kernel against its float64 reference, and the optimizer step with maxGradNorm against the
// reference chain projection -> clip -> Adam.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { createOptimizer, native, Rng, SparseCoder, Tensor, testing, ValueError } from '@sparsify/core';

import { M, randomCoder, relErrToMax } from './helpers.js';

const D = 16, N = 24;

function buffers(seed: number, scale: number, sizes: number[]): Float32Array[] {
  const rng = new Rng(seed);
  return sizes.map((n) => Float32Array.from({ length: n }, () => scale * rng.normal()));
}

test('gradClip: norm and scaled buffers match the float64 reference; under the limit nothing changes', async () => {
  const t = native().testing;
  for (const [scale, maxNorm] of [[1, 1], [1, 1e6], [1e-3, 0.5]] as const) {
    const bufs = buffers(3, scale, [70_000, 33, 1]);
    const ts = bufs.map((b) => Tensor.from(b.slice(), [b.length]));
    const norm = await t.gradClip(ts.map((x) => x.handle), maxNorm);
    const ref = t.gradClipReference(bufs.map((b) => Float64Array.from(b)), maxNorm);
    assert.ok(Math.abs(norm - ref.norm) <= 1e-12 * ref.norm, `norm ${norm} vs ${ref.norm}`);
    ts.forEach((x, i) => {
      const got = x.toFloat32Array();
      assert.ok(relErrToMax(got, ref.grads[i]) < 1e-6, `buffer ${i}`);
      if (ref.norm + 1e-6 <= maxNorm) assert.deepEqual(got, bufs[i], 'under the limit the buffers are untouched');
    });
    if (scale === 1 && maxNorm === 1) {
      let ss = 0;
      for (const g of ts) for (const v of g.toFloat32Array()) ss += v * v;
      assert.ok(Math.abs(Math.sqrt(ss) - 1) < 1e-5, `clipped to norm 1, got ${Math.sqrt(ss)}`);
    }
    for (const x of ts) x.dispose();
  }
  const x = Tensor.from(new Float32Array(4), [4]);
  await assert.rejects(async () => t.gradClip([x.handle], 0), ValueError);
  await assert.rejects(async () => t.gradClip([x.handle], Number.NaN), /maxNorm/);
  x.dispose();
});

/** g - <g,w>w per row (the optimizer's decoder-grad projection). */
function project(g: Float32Array, w: Float32Array, rows: number, cols: number): Float32Array {
  const out = g.slice();
  for (let r = 0; r < rows; r++) {
    let c = 0;
    for (let j = 0; j < cols; j++) c += g[r * cols + j] * w[r * cols + j];
    for (let j = 0; j < cols; j++) out[r * cols + j] -= c * w[r * cols + j];
  }
  return out;
}

for (const cfg of [{ k: 4 }, { activation: 'relu' as const }]) {
  test(`adam with maxGradNorm (${JSON.stringify(cfg)}): projection, clip, update as the float64 chain; the norm is reported`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sae-clip-'));
    try {
      const c = await randomCoder(cfg, 11, dir);
      const rng = new Rng(4);
      const x = Tensor.from(Float32Array.from({ length: N * D }, () => 3 * rng.normal()), [N, D]);
      const maxGradNorm = 0.05;
      const opt = createOptimizer('adam', [c], { lr: 1e-2, maxGradNorm });
      assert.equal(opt.maxGradNorm, maxGradNorm);
      assert.deepEqual(opt.lastGradNorms, [undefined]);
      const m = new Map<string, Float64Array>(), v = new Map<string, Float64Array>();
      for (let step = 1; step <= 3; step++) {
        await c.forwardBackward(x, { auxkAlpha: 0 });
        const p0 = new Map([...c.params()].map(([k, t]) => [k, t.toFloat32Array()]));
        const names = [...c.grads().keys()];
        const gs = names.map((k) => {
          const g = c.grads().get(k)!.toFloat32Array();
          return Float64Array.from(k === 'W_dec' && c.projectsDecoderGrad ? project(g, p0.get('W_dec')!, M, D) : g);
        });
        const ref = native().testing.gradClipReference(gs, maxGradNorm);
        assert.ok(ref.norm > maxGradNorm, `the test clips (norm ${ref.norm})`);
        await opt.step();
        const got = opt.lastGradNorms[0]!;
        assert.ok(Math.abs(got - ref.norm) < 1e-5 * ref.norm, `step ${step}: norm ${got} vs ${ref.norm}`);
        names.forEach((name, i) => {
          const g = ref.grads[i];
          const r = native().testing.optimReference('adam', { p: Float64Array.from(p0.get(name)!), g, s0: m.get(name) ?? new Float64Array(g.length), s1: v.get(name) ?? new Float64Array(g.length) }, { lr: 1e-2, step });
          m.set(name, r.s0);
          v.set(name, r.s1);
          const e = relErrToMax(c.params().get(name)!.toFloat32Array(), r.p);
          assert.ok(e < 1e-5, `step ${step} ${name}: ${e}`);
        });
        assert.ok([...c.grads().values()].every((g) => g.toFloat32Array().every((q) => q === 0)), 'grads zeroed');
      }
      x.dispose();
      c.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('maxGradNorm: above the norm the step equals the unclipped one bit for bit; bad values are ValueErrors', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sae-clip-'));
  try {
    const a = await randomCoder({ k: 4 }, 5, dir);
    const b = await SparseCoder.loadFromDisk(dir);
    await testing.normalizeDecoder(b.params().get('W_dec')!); // as randomCoder did to a
    const rng = new Rng(9);
    const x = Tensor.from(Float32Array.from({ length: N * D }, () => rng.normal()), [N, D]);
    const oa = createOptimizer('adam', [a], { lr: 1e-2, maxGradNorm: 1e9 });
    const ob = createOptimizer('adam', [b], { lr: 1e-2 });
    for (let s = 0; s < 2; s++) {
      await a.forwardBackward(x, { auxkAlpha: 0 });
      await b.forwardBackward(x, { auxkAlpha: 0 });
      await oa.step();
      await ob.step();
      assert.ok(oa.lastGradNorms[0]! > 0);
      assert.deepEqual(ob.lastGradNorms, [undefined], 'no clipping: no norm');
    }
    for (const [n, t] of a.params()) assert.deepEqual(t.toFloat32Array(), b.params().get(n)!.toFloat32Array(), n);
    assert.throws(() => createOptimizer('adam', [a], { maxGradNorm: -1 }), ValueError);
    assert.throws(() => createOptimizer('adam', [a], { maxGradNorm: Number.POSITIVE_INFINITY }), /maxGradNorm/);
    x.dispose();
    a.dispose();
    b.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
