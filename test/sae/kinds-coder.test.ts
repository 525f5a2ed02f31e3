// SparseCoder of each SAELens kind (relu, jumprelu step / tanh, batchtopk, Matryoshka batchtopk):
// forwardBackward against the float64 reference (kinds/reference.ts), the Adam step over every
// trained parameter (log_threshold included), BatchTopK's threshold update, fired latents,
// variable-width encode, save / load in our layout and the SAELens export, typed errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ConfigError, createOptimizer, DeviceError, kindStepReference, loadSaeLensCoder, mulberry32, SparseCoder, sparseCoderConfig, Tensor, ThresholdCoder, ValueError, type KindSpec, type SparseCoderConfig } from '@sparsify/core';

import { gauss, randomKindCoder } from './kind-coders.js';

const N = 24, D = 8, M = 32;

interface Case {
  name: string;
  cfg: Partial<SparseCoderConfig>;
  spec: (theta: number) => KindSpec;
  coef: { l1Coefficient?: number; l0Coefficient?: number };
}

const CASES: Case[] = [
  { name: 'relu', cfg: { activation: 'relu' }, spec: () => ({ kind: 'relu', l1Coefficient: 0.3 }), coef: { l1Coefficient: 0.3 } },
  {
    name: 'jumprelu-step', cfg: { activation: 'jumprelu', jumpreluBandwidth: 0.5 },
    spec: () => ({ kind: 'jumprelu', bandwidth: 0.5, sparsityLoss: 'step', l0Coefficient: 0.2 }), coef: { l0Coefficient: 0.2 },
  },
  {
    name: 'jumprelu-tanh', cfg: { activation: 'jumprelu', jumpreluBandwidth: 0.5, jumpreluSparsityLossMode: 'tanh', jumpreluTanhScale: 3 },
    spec: () => ({ kind: 'jumprelu', bandwidth: 0.5, sparsityLoss: 'tanh', tanhScale: 3, l0Coefficient: 0.2 }), coef: { l0Coefficient: 0.2 },
  },
  { name: 'batchtopk', cfg: { activation: 'batchtopk', k: 3, topkThresholdLr: 0.1 }, spec: (t) => ({ kind: 'batchtopk', k: 3, thresholdLr: 0.1, threshold: t }), coef: {} },
  // SAELens's float k: floor(2.7 · 24) = 64 kept over the batch.
  { name: 'batchtopk-float-k', cfg: { activation: 'batchtopk', k: 2.7, topkThresholdLr: 0.1 }, spec: (t) => ({ kind: 'batchtopk', k: 2.7, thresholdLr: 0.1, threshold: t }), coef: {} },
  { name: 'relu-lp2', cfg: { activation: 'relu', lpNorm: 2 }, spec: () => ({ kind: 'relu', l1Coefficient: 0.3, lpNorm: 2 }), coef: { l1Coefficient: 0.3 } },
  { name: 'relu-lp1.5', cfg: { activation: 'relu', lpNorm: 1.5 }, spec: () => ({ kind: 'relu', l1Coefficient: 0.3, lpNorm: 1.5 }), coef: { l1Coefficient: 0.3 } },
  {
    name: 'matryoshka', cfg: { activation: 'batchtopk', k: 3, topkThresholdLr: 0.1, matryoshkaPrefixes: [4, 12, 32] },
    spec: (t) => ({ kind: 'matryoshka', k: 3, thresholdLr: 0.1, threshold: t, widths: [4, 12, 32] }), coef: {},
  },
  {
    name: 'matryoshka-float-k', cfg: { activation: 'batchtopk', k: 3.5, topkThresholdLr: 0.1, matryoshkaPrefixes: [4, 12, 32] },
    spec: (t) => ({ kind: 'matryoshka', k: 3.5, thresholdLr: 0.1, threshold: t, widths: [4, 12, 32] }), coef: {},
  },
  {
    name: 'relu-no-bdec', cfg: { activation: 'relu', applyBDecToInput: false },
    spec: () => ({ kind: 'relu', l1Coefficient: 0.3, applyBDecToInput: false }), coef: { l1Coefficient: 0.3 },
  },
  {
    name: 'jumprelu-no-bdec', cfg: { activation: 'jumprelu', jumpreluBandwidth: 0.5, applyBDecToInput: false },
    spec: () => ({ kind: 'jumprelu', bandwidth: 0.5, sparsityLoss: 'step', l0Coefficient: 0.2, applyBDecToInput: false }), coef: { l0Coefficient: 0.2 },
  },
  {
    name: 'batchtopk-no-bdec', cfg: { activation: 'batchtopk', k: 3, topkThresholdLr: 0.1, applyBDecToInput: false },
    spec: (t) => ({ kind: 'batchtopk', k: 3, thresholdLr: 0.1, threshold: t, applyBDecToInput: false }), coef: {},
  },
  {
    name: 'matryoshka-topk', cfg: { activation: 'topk', k: 3, matryoshkaPrefixes: [4, 12] },
    spec: () => ({ kind: 'matryoshka', k: 3, thresholdLr: 0, threshold: 0, widths: [4, 12], perRow: true }), coef: {},
  },
];

const setup = (c: Case, seed = 1) => randomKindCoder(c.cfg, { N, D, M }, seed);

const f64 = (t: Tensor) => Float64Array.from(t.toFloat32Array());

function close(got: Float32Array | Float64Array, want: Float64Array, what: string, tol: number): void {
  let scale = 1e-12;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= tol * scale, `${what}[${i}]: ${got[i]} vs ${want[i]}`);
}

function totalVariance(x: Float32Array): number {
  const mean = new Float64Array(D);
  for (let i = 0; i < x.length; i++) mean[i % D] += x[i] / N;
  let tv = 0;
  for (let i = 0; i < x.length; i++) tv += (x[i] - mean[i % D]) ** 2;
  return tv;
}

/** Dense [N, M] from the padded sparse form, checking the padding rule on the way. */
function dense(acts: Float32Array, idx: Int32Array, counts: Int32Array, width: number): Float64Array {
  const out = new Float64Array(N * M);
  for (let n = 0; n < N; n++)
    for (let j = 0; j < width; j++) {
      const v = acts[n * width + j], i = idx[n * width + j];
      if (j >= counts[n]) assert.ok(v === 0 && i === 0, 'padding slots hold 0 at index 0');
      else out[n * M + i] += v;
    }
  return out;
}

for (const c of CASES) {
  test(`${c.name}: forwardBackward and an Adam step equal the float64 reference`, async () => {
    const { coder, x } = await setup(c);
    const p = coder.params();
    const theta0 = coder.topkThreshold ?? 0;
    const ref = kindStepReference(
      { encW: f64(p.get('encoder.weight')!), encB: f64(p.get('encoder.bias')!), W_dec: f64(p.get('W_dec')!), b_dec: f64(p.get('b_dec')!), ...(p.has('log_threshold') ? { logThreshold: f64(p.get('log_threshold')!) } : {}) },
      f64(x), N, c.spec(theta0),
    );
    const L = await coder.forwardBackward(x, { auxkAlpha: 0, trackFired: true, ...c.coef });
    assert.ok(Math.abs(L.loss - ref.loss) <= 1e-5 * ref.loss, `loss ${L.loss} vs ${ref.loss}`);
    const fvu = (ref.mse * N) / totalVariance(x.toFloat32Array());
    assert.ok(Math.abs(L.fvu - fvu) <= 1e-5 * fvu, `fvu ${L.fvu} vs ${fvu}`);
    const g = coder.grads();
    close(g.get('encoder.weight')!.toFloat32Array(), ref.grads.encW, 'grad encoder.weight', 1e-4);
    close(g.get('encoder.bias')!.toFloat32Array(), ref.grads.encB, 'grad encoder.bias', 1e-4);
    close(g.get('W_dec')!.toFloat32Array(), ref.grads.W_dec, 'grad W_dec', 1e-4);
    close(g.get('b_dec')!.toFloat32Array(), ref.grads.b_dec, 'grad b_dec', 1e-4);
    if (ref.grads.logThreshold) {
      assert.ok(ref.grads.logThreshold.some((v) => v !== 0), 'the case reaches the threshold gradient');
      close(g.get('log_threshold')!.toFloat32Array(), ref.grads.logThreshold, 'grad log_threshold', 1e-4);
    }
    if (c.cfg.activation === 'batchtopk') assert.ok(Math.abs(coder.topkThreshold! - ref.thresholdAfter) <= 1e-6 * ref.thresholdAfter, `threshold ${coder.topkThreshold} vs ${ref.thresholdAfter}`);
    // Fired latents: those with a positive training activation.
    const fired = await coder.takeFiredLatents();
    for (let m = 0; m < M; m++) {
      let any = 0;
      for (let n = 0; n < N; n++) if (ref.latents[n * M + m] > 0) any = 1;
      assert.equal(fired[m], any, `fired[${m}]`);
    }
    // One Adam step moves every trained parameter by lr g / (|g| + eps) (bias-corrected first step).
    const before = new Map([...coder.params()].map(([k, v]) => [k, f64(v)]));
    const grads = new Map([...g].map(([k, v]) => [k, f64(v)]));
    const lr = 1e-3, eps = 1e-8;
    const opt = createOptimizer('adam', [coder], { lr, eps });
    await opt.step();
    for (const [name, p1] of coder.params()) {
      if (name === 'topk_threshold') {
        assert.deepEqual([...p1.toFloat32Array()], [Math.fround(before.get(name)![0])], 'topk_threshold is not an optimizer parameter');
        continue;
      }
      const want = before.get(name)!.map((v, i) => v - (lr * grads.get(name)![i]) / (Math.abs(grads.get(name)![i]) + eps));
      close(p1.toFloat32Array(), want, `adam ${name}`, 1e-5);
    }
    opt.dispose();
    coder.dispose();
  });

  test(`${c.name}: variable-width encode, forward, save / load and the SAELens export`, async () => {
    const { coder, x } = await setup(c, 7);
    await coder.forwardBackward(x, { auxkAlpha: 0, ...c.coef }); // moves the batchtopk threshold away from its start
    const enc = await coder.encode(x);
    assert.ok(enc.counts, 'the sparse form has counts');
    const counts = enc.counts!.toInt32Array();
    const width = enc.topIndices.shape[1];
    assert.equal(Math.max(...counts), width);
    const mtopk = c.cfg.activation === 'topk';
    if (mtopk) assert.ok(counts.every((v) => v === 3), 'Matryoshka TopK keeps k per row');
    else assert.ok(new Set(counts).size > 1, 'rows have different numbers of non-zeros');
    const got = dense(enc.topActs.toFloat32Array(), enc.topIndices.toInt32Array(), counts, width);
    // The inference rule, densely in float64.
    const p = coder.params();
    const W = f64(p.get('encoder.weight')!), b = f64(p.get('encoder.bias')!), dec = f64(p.get('W_dec')!), bd = f64(p.get('b_dec')!), xx = f64(x);
    const lt = p.has('log_threshold') ? f64(p.get('log_threshold')!) : undefined;
    const bdIn = c.cfg.applyBDecToInput === false ? new Float64Array(D) : bd;
    const want = new Float64Array(N * M);
    for (let n = 0; n < N && mtopk; n++) {
      // The top k of ReLU(h n) in this row, value h.
      const hn: [number, number, number][] = [];
      for (let m = 0; m < M; m++) {
        let h = b[m], q = 0;
        for (let d = 0; d < D; d++) {
          h += (xx[n * D + d] - bdIn[d]) * W[m * D + d];
          q += dec[m * D + d] ** 2;
        }
        hn.push([Math.max(0, h * Math.sqrt(q)), m, h]);
      }
      hn.sort((u, v) => v[0] - u[0] || u[1] - v[1]);
      for (const [a, m, h] of hn.slice(0, 3)) if (a > 0) want[n * M + m] = h;
    }
    for (let n = 0; n < N && !mtopk; n++)
      for (let m = 0; m < M; m++) {
        let h = b[m], q = 0;
        for (let d = 0; d < D; d++) {
          h += (xx[n * D + d] - bdIn[d]) * W[m * D + d];
          q += dec[m * D + d] ** 2;
        }
        const keep = c.cfg.activation === 'relu' ? h > 0 : c.cfg.activation === 'jumprelu' ? h > Math.exp(lt![m]) : h * Math.sqrt(q) > coder.topkThreshold!;
        if (keep && h > 0) want[n * M + m] = h;
      }
    close(got, want, 'encode', 1e-5);
    const fw = await coder.forward(x);
    const dec1 = await coder.decode(enc.topActs, enc.topIndices);
    assert.deepEqual(fw.saeOut.toFloat32Array(), dec1.toFloat32Array());
    assert.ok(fw.fvu > 0 && Number.isFinite(fw.fvu));

    const dir = mkdtempSync(join(tmpdir(), 'kinds-coder-'));
    try {
      await coder.saveToDisk(join(dir, 'ours'));
      const cfgJson = JSON.parse(readFileSync(join(dir, 'ours', 'cfg.json'), 'utf8'));
      assert.equal(cfgJson.activation, c.cfg.activation);
      const back = await SparseCoder.loadFromDisk(join(dir, 'ours'));
      for (const [name, t] of coder.params()) assert.deepEqual(back.params().get(name)!.toFloat32Array(), t.toFloat32Array(), `round trip ${name}`);
      assert.equal(back.topkThreshold, coder.topkThreshold);
      assert.deepEqual(back.cfg, coder.cfg);
      const enc2 = await back.encode(x);
      assert.deepEqual(enc2.topActs.toFloat32Array(), enc.topActs.toFloat32Array());

      await coder.saveToDisk(join(dir, 'saelens'), { format: 'saelens' });
      const sl = JSON.parse(readFileSync(join(dir, 'saelens', 'cfg.json'), 'utf8'));
      assert.equal(sl.architecture, c.cfg.activation === 'relu' ? 'standard' : mtopk ? 'topk' : 'jumprelu');
      const loaded = await loadSaeLensCoder(join(dir, 'saelens'));
      assert.ok(mtopk ? loaded instanceof SparseCoder : loaded instanceof ThresholdCoder);
      const lf = await loaded.forward(x);
      close(lf.saeOut.toFloat32Array(), Float64Array.from(fw.saeOut.toFloat32Array()), 'SAELens export reconstruction', 1e-5);
      if (loaded instanceof ThresholdCoder) assert.deepEqual((lf as { counts: Tensor }).counts.toInt32Array(), counts, 'the exported JumpReLU keeps the same latents');
      // ... and back into a trainable coder of the same kind (SparseCoder.loadFromDisk of the SAELens folder).
      const again = await SparseCoder.loadFromDisk(join(dir, 'saelens'));
      assert.equal(again.cfg.activation, c.cfg.activation);
      assert.deepEqual(again.cfg.matryoshkaPrefixes, coder.cfg.matryoshkaPrefixes);
      const af = await again.forward(x);
      close(af.saeOut.toFloat32Array(), Float64Array.from(fw.saeOut.toFloat32Array()), 'SAELens round trip reconstruction', 1e-5);
      assert.deepEqual(af.counts.toInt32Array(), counts, 'the round trip keeps the same latents');
      if (c.cfg.activation === 'relu')
        for (const [name, t] of coder.params()) assert.deepEqual(again.params().get(name)!.toFloat32Array(), t.toFloat32Array(), `relu SAELens round trip ${name} bitwise`);
      if (c.cfg.activation === 'batchtopk') assert.equal(again.topkThreshold, coder.topkThreshold);
      await again.forwardBackward(x, { auxkAlpha: 0, ...c.coef }); // and it trains
      again.dispose();
      loaded.dispose();
      back.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
      coder.dispose();
    }
  });
}

test('relu / jumprelu: two micro-batches (rows, lossScale 1/2) add up to the full batch step', async () => {
  for (const c of CASES.filter((k) => k.cfg.activation === 'relu' || k.cfg.activation === 'jumprelu')) {
    const a = await setup(c, 5), b = await setup(c, 5);
    const full = await a.coder.forwardBackward(a.x, { auxkAlpha: 0, ...c.coef });
    let fvu = 0;
    for (const rows of [[0, N / 2], [N / 2, N]] as [number, number][]) {
      const r = await b.coder.forwardBackward(b.x, { auxkAlpha: 0, rows, batchVariance: true, lossScale: 0.5, ...c.coef });
      fvu += r.fvu;
    }
    // Each half's FVU is normalised by its share (1/2) of the batch's variance: their mean is the full FVU.
    assert.ok(Math.abs(fvu / 2 - full.fvu) <= 1e-5 * full.fvu, `${c.name}: fvu ${fvu / 2} vs ${full.fvu}`);
    for (const [name, g] of a.coder.grads()) close(b.coder.grads().get(name)!.toFloat32Array(), Float64Array.from(g.toFloat32Array()), `${c.name} micro-batched grad ${name}`, 1e-4);
    a.coder.dispose();
    b.coder.dispose();
  }
});

test('SAELens fixture folders (standard, jumprelu, batchtopk checkpoint) load as trainable kinds that infer as SAELens does', async () => {
  const FIX = join(import.meta.dirname, '..', 'fixtures', 'saelens');
  // The batchtopk checkpoint has k = 6.5 (SAELens's float k): it loads as a trainable batchtopk with that k.
  for (const [name, kind] of [['standard', 'relu'], ['jumprelu', 'jumprelu'], ['batchtopk', 'batchtopk']] as const) {
    const ours = await SparseCoder.loadFromDisk(join(FIX, name));
    const ref = await loadSaeLensCoder(join(FIX, name));
    assert.equal(ours.cfg.activation, kind, name);
    const rng = mulberry32(3);
    const x = Tensor.from(gauss(rng, 16 * ours.dIn), [16, ours.dIn]);
    const a = await ours.forward(x), b = await (ref as ThresholdCoder).forward(x);
    close(a.saeOut.toFloat32Array(), Float64Array.from(b.saeOut.toFloat32Array()), `${name} reconstruction`, 1e-5);
    assert.deepEqual(a.counts.toInt32Array(), b.counts.toInt32Array(), `${name} kept latents`);
    if (kind === 'batchtopk') {
      assert.equal(ours.cfg.k, 6.5);
      assert.equal(ours.topkThreshold, Math.fround(0.35), 'the checkpoint threshold');
      const L = await ours.forwardBackward(x, { auxkAlpha: 0 });
      assert.ok(Number.isFinite(L.loss) && L.loss > 0, 'and it trains');
    }
    ours.dispose();
    ref.dispose();
  }
});

test('SAELens kinds: typed errors for bad combinations', async () => {
  assert.throws(() => sparseCoderConfig({ activation: 'groupmax', matryoshkaPrefixes: [4, 8] }), ConfigError);
  assert.throws(() => sparseCoderConfig({ activation: 'topk', matryoshkaPrefixes: [4, 8], multiTopk: true }), /multi_topk/);
  assert.throws(() => sparseCoderConfig({ activation: 'batchtopk', matryoshkaPrefixes: [8, 4] }), /strictly increasing/);
  assert.throws(() => sparseCoderConfig({ activation: 'jumprelu', transcode: true }), /transcode/);
  assert.throws(() => sparseCoderConfig({ activation: 'relu', jumpreluBandwidth: 0 }), /jumprelu_bandwidth/);
  assert.throws(() => sparseCoderConfig({ activation: 'softmax' as never }), /activation/);
  await assert.rejects(SparseCoder.create(D, { activation: 'batchtopk', numLatents: M, matryoshkaPrefixes: [4, 64] }), /matryoshka_prefixes: 64/);
  await assert.rejects(SparseCoder.create(D, { activation: 'jumprelu', numLatents: M }, { device: 'cuda' }), DeviceError);
  const c = await SparseCoder.create(D, { activation: 'jumprelu', numLatents: M });
  const x = Tensor.from(new Float32Array(N * D).fill(1), [N, D]);
  await assert.rejects(c.forwardBackward(x, { auxkAlpha: 0.1 }), ValueError);
  await assert.rejects(c.forwardBackward(x, { auxkAlpha: 0, l0Coefficient: -1 }), /l0Coefficient/);
  await assert.rejects(c.encode(x, { returnPreActs: true }), /returnPreActs/);
  const noDec = await SparseCoder.create(D, { activation: 'batchtopk', numLatents: M, k: 2 }, { decoder: false });
  await assert.rejects(noDec.encode(x), /needs its decoder/);
  noDec.dispose();
  const jNoDec = await SparseCoder.create(D, { activation: 'jumprelu', numLatents: M }, { decoder: false });
  assert.ok((await jNoDec.encode(x)).counts, 'jumprelu encodes without a decoder');
  jNoDec.dispose();
  // SAELens's init: W_dec rows at norm 0.1, W_enc = W_dec, log_threshold = log(0.01).
  const p = c.params();
  assert.deepEqual(p.get('encoder.weight')!.toFloat32Array(), p.get('W_dec')!.toFloat32Array());
  const w = p.get('W_dec')!.toFloat32Array();
  assert.ok(Math.abs(Math.hypot(...w.subarray(0, D)) - 0.1) < 1e-6);
  assert.ok(p.get('log_threshold')!.toFloat32Array().every((v) => v === Math.fround(Math.log(0.01))));
  c.dispose();
});
