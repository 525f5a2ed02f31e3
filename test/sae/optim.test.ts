// Optimizer steps against float64 references (native/ref/optim_reference.cpp): Adam (torch
// semantics, bias correction), schedule-free signum (z, k, lr_max, weight_sum, eval/train) and
// Muon (Newton-Schulz in f32) with Adam for 1-D parameters; decoder-grad projection; state dicts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { createOptimizer, defaultLr, linearWarmupDecay, loadOptimizerState, native, Rng, saveOptimizerState, SparseCoder, Tensor, ValueError } from '@sparsify/core';

import { randomCoder, relErrToMax } from './helpers.js';

const D = 16, N = 24;

function f64(a: Float32Array): Float64Array {
  return Float64Array.from(a);
}

interface Snap { p: Map<string, Float32Array>; g: Map<string, Float32Array> }
function snapshot(c: SparseCoder): Snap {
  return {
    p: new Map([...c.params()].map(([k, v]) => [k, v.toFloat32Array()])),
    g: new Map([...c.grads()].map(([k, v]) => [k, v.toFloat32Array()])),
  };
}

/** g - <g,w>w per row (the projection the optimizer applies to SAE decoder grads). */
function project(g: Float32Array, w: Float32Array, rows: number, cols: number): Float32Array {
  const out = g.slice();
  for (let r = 0; r < rows; r++) {
    let c = 0;
    for (let j = 0; j < cols; j++) c += g[r * cols + j] * w[r * cols + j];
    for (let j = 0; j < cols; j++) out[r * cols + j] -= c * w[r * cols + j];
  }
  return out;
}

async function withCoder(cfg: object, fn: (c: SparseCoder, x: Tensor) => Promise<void>) {
  const dir = mkdtempSync(join(tmpdir(), 'sae-opt-'));
  try {
    const c = await randomCoder(cfg, 11, dir);
    const rng = new Rng(4);
    const x = Tensor.from(Float32Array.from({ length: N * D }, () => rng.normal()), [N, D]);
    await fn(c, x);
    c.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('adam: three steps match the float64 reference, grads are zeroed, decoder grads projected', async () => {
  await withCoder({ k: 4 }, async (c, x) => {
    const opt = createOptimizer('adam', [c], { lr: 1e-2 });
    assert.equal(defaultLr('adam', 16384), 2e-4);
    const state = new Map<string, { p: Float64Array; m: Float64Array; v: Float64Array }>();
    for (let step = 1; step <= 3; step++) {
      await c.forwardBackward(x, { auxkAlpha: 0 });
      const s = snapshot(c);
      const mult = step === 1 ? 1 : 0.5;
      await opt.step(mult);
      for (const [name, p] of c.params()) {
        let g = s.g.get(name)!;
        if (name === 'W_dec') g = project(g, s.p.get('W_dec')!, 64, D);
        const st = state.get(name) ?? { p: f64(s.p.get(name)!), m: new Float64Array(g.length), v: new Float64Array(g.length) };
        const r = native().testing.optimReference('adam', { p: f64(s.p.get(name)!), g: f64(g), s0: st.m, s1: st.v }, { lr: 1e-2 * mult, step });
        state.set(name, { p: r.p, m: r.s0, v: r.s1 });
        const e = relErrToMax(p.toFloat32Array(), r.p);
        assert.ok(e < 1e-5, `step ${step} ${name}: ${e}`);
      }
      assert.ok([...c.grads().values()].every((g) => g.toFloat32Array().every((v) => v === 0)), 'grads zeroed');
    }
    opt.dispose();
  });
});

test('signum (schedule-free): steps, eval()/train() and the state dict match the reference', async () => {
  await withCoder({ k: 4, transcode: true }, async (c, x) => {
    const opt = createOptimizer('signum', [c], { lr: 0.01 });
    const z = new Map<string, Float64Array>();
    let lrMax = 0, weightSum = 0;
    for (let step = 1; step <= 3; step++) {
      await c.forwardBackward(x, { y: x, auxkAlpha: 0 });
      const s = snapshot(c);
      await opt.step();
      lrMax = Math.max(lrMax, 0.01);
      weightSum += lrMax ** 2;
      const ckp1 = lrMax ** 2 / weightSum;
      for (const [name, p] of c.params()) {
        const r = native().testing.optimReference('signum', { p: f64(s.p.get(name)!), g: f64(s.g.get(name)!), s0: z.get(name) ?? f64(s.p.get(name)!) }, { lr: 0.01, momentum: 0.95, ckp1 });
        z.set(name, r.s0);
        assert.ok(relErrToMax(p.toFloat32Array(), r.p) < 1e-5, `step ${step} ${name}`);
      }
    }
    const sd = opt.stateDict();
    assert.deepEqual(sd.scalars.groups[0], { k: 3, lr_max: 0.01, weight_sum: weightSum });
    for (const [name] of c.params()) assert.ok(relErrToMax(sd.tensors.get(`0.${name}.z`)!.toFloat32Array(), z.get(name)!) < 1e-5);
    const y = c.params().get('encoder.weight')!.toFloat32Array();
    await opt.eval();
    const xw = c.params().get('encoder.weight')!.toFloat32Array();
    const zw = z.get('encoder.weight')!;
    for (let i = 0; i < y.length; i += 97) assert.ok(Math.abs(xw[i] - (y[i] + (1 - 1 / 0.95) * (zw[i] - y[i]))) < 1e-6);
    await assert.rejects(opt.step(), ValueError);
    await opt.train();
    const back = c.params().get('encoder.weight')!.toFloat32Array();
    assert.ok(relErrToMax(back, y) < 1e-5);
    // A second optimizer restored from the state dict continues identically.
    const opt2 = createOptimizer('signum', [c], { lr: 0.01 });
    opt2.loadStateDict(sd);
    assert.deepEqual(opt2.stateDict().scalars.groups[0], sd.scalars.groups[0]);
    opt.dispose();
    opt2.dispose();
  });
});

test('muon: Newton-Schulz (f32) + Adam for 1-D parameters match the float64 reference', async () => {
  await withCoder({ k: 4, skipConnection: true, transcode: true }, async (c, x) => {
    const opt = createOptimizer('muon', [c]);
    assert.equal(opt.lr, 2e-3);
    const bufs = new Map<string, Float64Array[]>();
    for (let step = 1; step <= 2; step++) {
      await c.forwardBackward(x, { y: x, auxkAlpha: 0 });
      const s = snapshot(c);
      await opt.step(1, 0.5);
      for (const [name, p] of c.params()) {
        const shape = p.shape;
        const g = f64(s.g.get(name)!);
        let r;
        if (shape.length === 2) {
          const b = bufs.get(name)?.[0] ?? new Float64Array(g.length);
          r = native().testing.optimReference('muon', { p: f64(s.p.get(name)!), g, s0: b }, { lr: 2e-3, rows: shape[0], cols: shape[1], momentum: 0.95, nesterov: true, weightDecay: 0.1 });
          bufs.set(name, [r.s0]);
        } else {
          const [m, v] = bufs.get(name) ?? [new Float64Array(g.length), new Float64Array(g.length)];
          r = native().testing.optimReference('adam', { p: f64(s.p.get(name)!), g, s0: m, s1: v }, { lr: 1e-3, step });
          bufs.set(name, [r.s0, r.s1]);
        }
        // Compare the update (p_new - p_old): Newton-Schulz in f32 vs f64.
        const old = s.p.get(name)!;
        const ours = p.toFloat32Array().map((v, i) => v - old[i]);
        const refd = r.p.map((v: number, i: number) => v - old[i]);
        const e = relErrToMax(ours, refd);
        assert.ok(e < 2e-3, `step ${step} ${name}: update rel err ${e}`);
      }
    }
    opt.dispose();
  });
});

test('lr schedule and optimizer argument errors', () => {
  assert.equal(linearWarmupDecay(0, 10, 100), 0);
  assert.equal(linearWarmupDecay(5, 10, 100), 0.5);
  assert.equal(linearWarmupDecay(10, 10, 100), 1);
  assert.equal(linearWarmupDecay(55, 10, 100), 0.5);
  assert.equal(linearWarmupDecay(200, 10, 100), 0);
  assert.throws(() => createOptimizer('sgd' as never, []), ValueError);
  assert.throws(() => createOptimizer('adam', []), ValueError);
});

test('optimizer state files round-trip (safetensors + json structure) and resume identically', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sae-optstate-'));
  try {
    for (const kind of ['signum', 'adam', 'muon'] as const) {
      const a = await randomCoder({ k: 4 }, 21, join(dir, `a-${kind}`));
      const b = await randomCoder({ k: 4 }, 21, join(dir, `b-${kind}`));
      const rng = new Rng(8);
      const x = Tensor.from(Float32Array.from({ length: N * D }, () => rng.normal()), [N, D]);
      const oa = createOptimizer(kind, [a], { lr: 1e-2 });
      await a.forwardBackward(x, { auxkAlpha: 0 });
      await oa.step();
      // b follows a's state: same params, optimizer state from the file.
      await a.saveToDisk(join(dir, `a-${kind}`));
      const b2 = await SparseCoder.loadFromDisk(join(dir, `a-${kind}`));
      const file = join(dir, `optimizer-${kind}`);
      saveOptimizerState(file, oa.stateDict());
      const ob = createOptimizer(kind, [b2], { lr: 1e-2 });
      ob.loadStateDict(loadOptimizerState(file));
      for (const [c, o] of [[a, oa], [b2, ob]] as const) {
        await c.forwardBackward(x, { auxkAlpha: 0 });
        await o.step();
      }
      for (const [name, p] of a.params()) assert.deepEqual(b2.params().get(name)!.toFloat32Array(), p.toFloat32Array(), `${kind} ${name}`);
      oa.dispose();
      ob.dispose();
      for (const c of [a, b, b2]) c.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
