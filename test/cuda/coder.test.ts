// device 'cuda' through SparseCoder, the optimizers and the Trainer, against the CPU path on the
// fixtures. The GPU computes the encoder GEMM in bf16, so selections may differ at near-ties and
// values by bf16 rounding: the checks below allow exactly that, nothing more. Skipped (with the
// reason) without a CUDA build and a device; NONE of this has run on a GPU yet.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import { ConfigError, createOptimizer, loadSafetensors, native, SparseCoder, Tensor } from '@sparsify/core';
import { Trainer, trainConfig, type StepInfo, type TrainConfigInit } from '@sparsify/train';

import { FIXTURES as SAE_FIXTURES, loadGolden, relErrToMax } from '../sae/helpers.js';
import { fixtureDataset, tinyModel, tmp } from '../train/helpers.js';
import { cudaAddon } from './cuda-env.js';

const { skip } = cudaAddon();
const opts = { skip: skip ?? false };
const BF16 = 3e-2; // bf16 GEMM inputs (8 bits of mantissa) vs the f32 CPU kernels, relative to the largest entry
const VARIANTS = [
  'sae_d64_k8',
  'sae_d64_k8_groupmax',
  'sae_d64_k16',
  'sae_d128_k8',
  'sae_d128_k16',
  'transcoder_d64_k8',
  'sae_d64_k8_multitopk', // forward returns the 4k selection, its decode and multi_topk_fvu
  'transcoder_d64_k8_skip', // W_skip: sae_out += x·W_skipᵀ (f32 on the device)
];

/** Fraction of rows' index sets that agree (as sets) between two [N,k] selections. */
function setAgreement(a: Int32Array, b: Int32Array, k: number): number {
  let same = 0;
  for (let i = 0; i < a.length; i += k) {
    const s = new Set(a.subarray(i, i + k));
    for (const v of b.subarray(i, i + k)) if (s.has(v)) same++;
  }
  return same / a.length;
}

/** Fraction of entries farther apart than `tol` times the largest |b|. */
function fracOff(a: Float32Array, b: Float32Array, tol: number): number {
  let mx = 0;
  for (const v of b) mx = Math.max(mx, Math.abs(v));
  let off = 0;
  for (let i = 0; i < a.length; i++) if (Math.abs(a[i] - b[i]) > tol * mx) off++;
  return off / a.length;
}

/** RMS of a − b relative to the RMS of b. */
function rmsRel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}
/**
 * relErrToMax over the rows whose k selected latents are the same set on both sides. A near-tie
 * that the bf16 GEMM breaks the other way swaps one latent of a row, and that row's
 * reconstruction then differs by about act · ‖W_a − W_b‖ — legitimately, and far beyond bf16
 * rounding; setAgreement bounds how many rows may do so.
 */
function relErrToMaxSameSets(a: Float32Array, b: Float32Array, ia: Int32Array, ib: Int32Array, k: number): number {
  const rows = ia.length / k, D = b.length / rows;
  const keep: number[] = [];
  for (let r = 0; r < rows; r++) {
    const s = new Set(ia.subarray(r * k, r * k + k));
    if (ib.subarray(r * k, r * k + k).every((v) => s.has(v))) keep.push(r);
  }
  const pick = (x: Float32Array) => Float32Array.from(keep.flatMap((r) => Array.from(x.subarray(r * D, r * D + D))));
  return relErrToMax(pick(a), pick(b));
}
/** The selected values are the pre-activations at the selected latents, bitwise (one kernel computes both). */
function assertSelectedFromPreActs(e: { topActs: Tensor; topIndices: Tensor; preActs?: Tensor }, what: string): void {
  const [N, k] = e.topIndices.shape;
  const M = e.preActs!.shape[1];
  const pre = e.preActs!.toFloat32Array(), acts = e.topActs.toFloat32Array(), idx = e.topIndices.toInt32Array();
  for (let n = 0; n < N; n++)
    for (let j = 0; j < k; j++) assert.equal(acts[n * k + j], pre[n * M + idx[n * k + j]], `${what}: row ${n} slot ${j}`);
}
const close = (a: number, b: number, rel: number) => Math.abs(a - b) <= rel * Math.max(Math.abs(a), Math.abs(b), 1e-12);

for (const variant of VARIANTS) {
  test(`cuda SparseCoder ${variant}: encode / decode / forward vs the CPU coder`, opts, async () => {
    const dir = join(SAE_FIXTURES, variant, 'state');
    const g = loadGolden(variant);
    const cpu = await SparseCoder.loadFromDisk(dir);
    const gpu = await SparseCoder.loadFromDisk(dir, { device: 'cuda' });
    assert.equal(gpu.device, 'cuda');
    const x = g.get('x')!;
    const y = g.get('y');
    const k = cpu.cfg.k;

    const ec = await cpu.encode(x, { returnPreActs: true });
    const eg = await gpu.encode(x, { returnPreActs: true });
    assert.deepEqual(eg.topIndices.shape, ec.topIndices.shape);
    assert.deepEqual(eg.preActs!.shape, ec.preActs!.shape);
    assert.ok(relErrToMax(eg.preActs!.toFloat32Array(), ec.preActs!.toFloat32Array()) < BF16, 'pre_acts');
    assertSelectedFromPreActs(eg, variant);
    assert.ok(setAgreement(ec.topIndices.toInt32Array(), eg.topIndices.toInt32Array(), k) >= 0.95, 'selections agree but for near-ties');
    // Decoding each side's own codes gives close reconstructions.
    const dc = await cpu.decode(ec.topActs, ec.topIndices);
    const dg = await gpu.decode(eg.topActs, eg.topIndices);
    const ic = ec.topIndices.toInt32Array(), ig = eg.topIndices.toInt32Array();
    assert.ok(relErrToMaxSameSets(dg.toFloat32Array(), dc.toFloat32Array(), ig, ic, k) < BF16, 'decode(encode(x))');
    // Decode of the same codes is f32 on both sides.
    const same = await gpu.decode(ec.topActs, ec.topIndices);
    assert.ok(relErrToMax(same.toFloat32Array(), dc.toFloat32Array()) < 1e-5, 'decode of identical codes');

    for (const dead of [undefined, g.get('dead_mask_many'), g.get('dead_mask_few')]) {
      const fc = await cpu.forward(x, { y, deadMask: dead });
      const fg = await gpu.forward(x, { y, deadMask: dead });
      assert.ok(close(fg.fvu, fc.fvu, BF16), `fvu ${fg.fvu} vs ${fc.fvu}`);
      assert.ok(close(fg.auxkLoss, fc.auxkLoss, 5e-2) || (fc.auxkLoss === 0 && fg.auxkLoss === 0), `auxk ${fg.auxkLoss} vs ${fc.auxkLoss}`);
      assert.deepEqual(fg.latentIndices.shape, fc.latentIndices.shape, 'k (4k with multi_topk) latents per row');
      const kk = fc.latentIndices.shape[1];
      const sameSets = relErrToMaxSameSets(fg.saeOut.toFloat32Array(), fc.saeOut.toFloat32Array(), fg.latentIndices.toInt32Array(), fc.latentIndices.toInt32Array(), kk);
      assert.ok(sameSets < BF16, `sae_out (rows with the same selection): ${sameSets}`);
      if (cpu.cfg.multiTopk) {
        assert.ok(close(fg.multiTopkFvu, fc.multiTopkFvu, BF16), `multi_topk_fvu ${fg.multiTopkFvu} vs ${fc.multiTopkFvu}`);
        assert.ok(setAgreement(fc.latentIndices.toInt32Array(), fg.latentIndices.toInt32Array(), 4 * k) >= 0.95, '4k selections');
      } else assert.equal(fg.multiTopkFvu, 0);
    }
    // A forward changes nothing on the device (no renorm, no gradients) and its reductions are deterministic.
    const f1 = await gpu.forward(x, { y }), f2 = await gpu.forward(x, { y });
    assert.equal(f2.fvu, f1.fvu);
    assert.deepEqual(f2.saeOut.toFloat32Array(), f1.saeOut.toFloat32Array());
    assert.doesNotThrow(() => gpu.params(), 'forward leaves the host copy current');
    cpu.dispose();
    gpu.dispose();
  });
}

test('cuda encoder-only coder (decoder: false): the resident encoder selects as the full coder; forward is a clear error', opts, async () => {
  for (const variant of ['sae_d64_k8', 'sae_d64_k8_groupmax', 'transcoder_d64_k8']) {
    const dir = join(SAE_FIXTURES, variant, 'state');
    const x = loadGolden(variant).get('x')!;
    const full = await SparseCoder.loadFromDisk(dir, { device: 'cuda' });
    const enc = await SparseCoder.loadFromDisk(dir, { device: 'cuda', decoder: false });
    assert.equal(enc.device, 'cuda');
    const a = await full.encode(x), b = await enc.encode(x, { returnPreActs: true });
    // The same bf16 GEMM on both sides: the same selection and values.
    assert.deepEqual([...b.topIndices.toInt32Array()], [...a.topIndices.toInt32Array()], variant);
    assert.ok(relErrToMax(b.topActs.toFloat32Array(), a.topActs.toFloat32Array()) < 1e-5, variant);
    assert.deepEqual(b.preActs!.toFloat32Array(), (await full.encode(x, { returnPreActs: true })).preActs!.toFloat32Array(), `${variant} pre_acts`);
    assertSelectedFromPreActs(b, `${variant} (encoder only)`);
    await assert.rejects(enc.forward(x), /no decoder/);
    for (const c of [full, enc]) c.dispose();
  }
});

test('cuda: the gradients live on the device (grads() is a clear error naming readGrads)', opts, async () => {
  const c = await SparseCoder.create(32, { numLatents: 128, k: 4 }, { device: 'cuda' });
  assert.throws(() => c.grads(), /readGrads/);
  c.dispose();
});

for (const [kind, variant] of [
  ['adam', 'sae_d64_k8'],
  ['signum', 'sae_d64_k8'],
  ['adam', 'sae_d64_k8_multitopk'],
  ['adam', 'transcoder_d64_k8_skip'],
  ['signum', 'transcoder_d64_k8_skip'],
] as const) {
  test(`cuda ${kind} ${variant}: forwardBackward + step for 3 steps vs the CPU path; state dict round trip`, opts, async () => {
    const dir = join(SAE_FIXTURES, variant, 'state');
    const g = loadGolden(variant);
    const x = g.get('x')!;
    const dead = g.get('dead_mask_many');
    const cpu = await SparseCoder.loadFromDisk(dir);
    const gpu = await SparseCoder.loadFromDisk(dir, { device: 'cuda' });
    const oc = createOptimizer(kind, [cpu], { lr: 1e-3 });
    const og = createOptimizer(kind, [gpu], { lr: 1e-3 });
    const p0 = new Map([...cpu.params()].map(([n, t]) => [n, t.toFloat32Array()]));
    for (let s = 0; s < 3; s++) {
      const lc = await cpu.forwardBackward(x, { auxkAlpha: 1 / 32, deadMask: dead, lossScale: 0.5 });
      const lg = await gpu.forwardBackward(x, { auxkAlpha: 1 / 32, deadMask: dead, lossScale: 0.5 });
      assert.ok(close(lg.fvu, lc.fvu, BF16) && close(lg.loss, lc.loss, BF16), `step ${s}: loss ${lg.loss} vs ${lc.loss}`);
      assert.ok(close(lg.multiTopkFvu, lc.multiTopkFvu, BF16), `step ${s}: multi_topk_fvu ${lg.multiTopkFvu} vs ${lc.multiTopkFvu}`);
      if (s === 0) {
        const gc = await cpu.readGrads();
        const gg = await gpu.readGrads();
        assert.deepEqual([...gg.keys()].sort(), [...gc.keys()].sort(), 'the same parameters have gradients');
        // Latents selected on one side only (bf16 near-ties) move a few rows; the rest agree.
        for (const [n, t] of gc) assert.ok(fracOff(gg.get(n)!.toFloat32Array(), t.toFloat32Array(), 0.05) < 0.1, `grad ${n}`);
      }
      await oc.step(0.5);
      await og.step(0.5);
    }
    if (kind === 'signum') {
      await oc.eval();
      await og.eval();
    }
    await gpu.syncToHost();
    // Sign-like updates: an entry moved by ~lr per step on both sides or on neither; a near-tie
    // selected on one side only, or a gradient within bf16 noise of 0, moves differently. Gross
    // bugs (wrong sign, lr, parameter order) put most entries off; 20% is the (uncalibrated) bar.
    for (const [n, t] of cpu.params()) {
      const a = t.toFloat32Array(), b = gpu.params().get(n)!.toFloat32Array(), o = p0.get(n)!;
      let off = 0;
      for (let i = 0; i < a.length; i++) if (Math.abs(a[i] - o[i] - (b[i] - o[i])) > 0.5e-3 * 0.5) off++;
      assert.ok(off <= 0.2 * a.length, `${n}: ${off}/${a.length} entries differ by more than half an update`);
    }
    const sc = await oc.readStateDict();
    const sg = await og.readStateDict();
    assert.deepEqual([...sg.tensors.keys()].sort(), [...sc.tensors.keys()].sort());
    for (const [key, t] of sc.tensors) assert.deepEqual(sg.tensors.get(key)!.shape, t.shape, key);
    assert.deepEqual(sg.scalars, sc.scalars, 'host bookkeeping is identical');
    // Loading the CPU state into the cuda optimizer puts it on the device.
    og.loadStateDict(sc);
    const back = await og.readStateDict();
    for (const [key, t] of sc.tensors) assert.deepEqual(back.tensors.get(key)!.toFloat32Array(), t.toFloat32Array(), key);
    for (const t of [...sg.tensors.values(), ...back.tensors.values()]) t.dispose();
    oc.dispose();
    og.dispose();
    cpu.dispose();
    gpu.dispose();
  });
}

// muon on cuda from the device's own gradients vs the CPU kernels (optimStep, the CPU Muon's
// entries) on the same gradients and parameters: the momentum buffers and the Adam half are f32
// element-wise (equal to rounding); the 2-D updates go through Newton–Schulz with bf16 GEMM
// operands, so they match to bf16 rounding. Shapes: the fixture (M > D: orthogonalised on the
// transposed side) and a created coder with M < D and sizes off the 32-padding.
for (const shape of ['fixture sae_d64_k8', 'created d=72 M=40'] as const) {
  test(`cuda muon (${shape}): one step from the same gradients equals the CPU kernels (Newton-Schulz to bf16 rounding)`, opts, async () => {
    const fixture = shape.startsWith('fixture');
    const gpu = fixture
      ? await SparseCoder.loadFromDisk(join(SAE_FIXTURES, 'sae_d64_k8', 'state'), { device: 'cuda' })
      : await SparseCoder.create(72, { numLatents: 40, k: 4 }, { device: 'cuda', seed: 3 });
    let x = fixture ? loadGolden('sae_d64_k8').get('x')! : undefined;
    if (!x) {
      const v = new Float32Array(16 * 72);
      for (let i = 0; i < v.length; i++) v[i] = Math.sin(i * 0.37) + 0.1 * Math.cos(i * 1.3);
      x = Tensor.from(v, [16, 72]);
    }
    await gpu.forwardBackward(x, { auxkAlpha: 0 });
    const grads = await gpu.readGrads();
    await gpu.syncToHost(); // after the forward's decoder renormalisation
    const p0 = new Map([...gpu.params()].map(([n, t]) => [n, t.clone()]));
    const lr = 1e-2;
    const og = createOptimizer('muon', [gpu], { lr });
    await og.step(0.5, 0.25);
    await gpu.syncToHost();
    const st = await og.readStateDict();
    // The CPU reference: the entries the CPU Muon builds, on copies of p0 and the device's grads.
    const ref = new Map([...p0].map(([n, t]) => [n, t.clone()]));
    const state = new Map<string, Tensor[]>();
    const entries = [...ref].map(([n, p]) => {
      const g = grads.get(n)!.clone();
      if (p.shape.length === 2) {
        state.set(n, [Tensor.zeros(p.shape)]);
        return { kind: 'muon', param: p.handle, grad: g.handle, state: state.get(n)!.map((t) => t.handle), project: n === 'W_dec' && gpu.projectsDecoderGrad, lr: lr * 0.5, momentum: 0.95, nesterov: true, weightDecay: 0.1, nsSteps: 5 };
      }
      state.set(n, [Tensor.zeros(p.shape), Tensor.zeros(p.shape)]);
      return { kind: 'adam', param: p.handle, grad: g.handle, state: state.get(n)!.map((t) => t.handle), project: false, lr: lr * 0.25, beta1: 0.9, beta2: 0.999, eps: 1e-8, step: 1 };
    });
    await native().testing.optimStep(entries);
    for (const [n, want] of ref) {
      const got = gpu.params().get(n)!.toFloat32Array(), w = want.toFloat32Array(), o = p0.get(n)!.toFloat32Array();
      if (want.shape.length === 2) {
        const dg = got.map((v, i) => v - o[i]), dc = w.map((v, i) => v - o[i]);
        // Calibration (native/cuda/sim/muon-ns.mjs, bf16 operands vs f32): RMS 0.02-0.03, max
        // 0.02-0.05 of the largest entry; one Newton-Schulz step too many or too few: RMS ~0.35.
        assert.ok(rmsRel(dg, dc) < 0.1, `${n}: muon update off by ${rmsRel(dg, dc)} (RMS, relative)`);
        assert.ok(relErrToMax(dg, dc) < 0.15, `${n}: muon update off by ${relErrToMax(dg, dc)} of its largest entry`);
        const buf = st.tensors.get(`0.${n}.exp_avg`)!.toFloat32Array();
        assert.ok(relErrToMax(buf, state.get(n)![0].toFloat32Array()) < 1e-5, `${n}: momentum buffer`);
        assert.ok(!st.tensors.has(`0.${n}.exp_avg_sq`), `${n}: muon keeps no exp_avg_sq`);
      } else {
        assert.ok(relErrToMax(got, w) < 1e-6, `${n}: Adam half`);
        assert.ok(relErrToMax(st.tensors.get(`0.${n}.exp_avg_sq`)!.toFloat32Array(), state.get(n)![1].toFloat32Array()) < 1e-6, `${n}: exp_avg_sq`);
      }
    }
    assert.deepEqual(st.scalars.groups, [{ step: 1 }]);
    for (const t of [...st.tensors.values(), ...ref.values(), ...p0.values(), ...grads.values(), ...[...state.values()].flat()]) t.dispose();
    og.dispose();
    gpu.dispose();
  });
}

test('cuda muon: forwardBackward + step for 3 steps vs the CPU path; state dict keys as cpu; round trip', opts, async () => {
  const dir = join(SAE_FIXTURES, 'sae_d64_k8', 'state');
  const g = loadGolden('sae_d64_k8');
  const x = g.get('x')!, dead = g.get('dead_mask_many');
  const cpu = await SparseCoder.loadFromDisk(dir);
  const gpu = await SparseCoder.loadFromDisk(dir, { device: 'cuda' });
  const oc = createOptimizer('muon', [cpu], { lr: 2e-3 }), og = createOptimizer('muon', [gpu], { lr: 2e-3 });
  for (let s = 0; s < 3; s++) {
    const lc = await cpu.forwardBackward(x, { auxkAlpha: 1 / 32, deadMask: dead });
    const lg = await gpu.forwardBackward(x, { auxkAlpha: 1 / 32, deadMask: dead });
    assert.ok(close(lg.fvu, lc.fvu, BF16) && close(lg.loss, lc.loss, BF16), `step ${s}: loss ${lg.loss} vs ${lc.loss}`);
    await oc.step(1, 0.5);
    await og.step(1, 0.5);
  }
  await gpu.syncToHost();
  for (const [n, t] of cpu.params()) assert.ok(relErrToMax(gpu.params().get(n)!.toFloat32Array(), t.toFloat32Array()) < BF16, n);
  const sc = await oc.readStateDict(), sg = await og.readStateDict();
  assert.deepEqual([...sg.tensors.keys()].sort(), [...sc.tensors.keys()].sort());
  for (const [key, t] of sc.tensors) assert.deepEqual(sg.tensors.get(key)!.shape, t.shape, key);
  assert.deepEqual(sg.scalars, sc.scalars, 'host bookkeeping is identical');
  og.loadStateDict(sc);
  const back = await og.readStateDict();
  for (const [key, t] of sc.tensors) assert.deepEqual(back.tensors.get(key)!.toFloat32Array(), t.toFloat32Array(), key);
  for (const t of [...sg.tensors.values(), ...back.tensors.values()]) t.dispose();
  for (const o of [oc, og]) o.dispose();
  for (const c of [cpu, gpu]) c.dispose();
});

async function run(device: 'cpu' | 'cuda', init: TrainConfigInit, o: { resume?: boolean; stopAt?: number } = {}) {
  const cfg = trainConfig({ logToWandb: false, runName: 'r', ...init });
  const steps: StepInfo[] = [];
  const trainer: Trainer = new Trainer(cfg, fixtureDataset(32), await tinyModel(), {
    device,
    onStep: (s) => {
      steps.push(s);
      if (o.stopAt !== undefined && s.step === o.stopAt) trainer.requestStop();
    },
  });
  if (o.resume) await trainer.loadState();
  const result = await trainer.fit();
  return { steps, result, runDir: join(cfg.saveDir, 'r') };
}

function listFiles(dir: string, pre = ''): string[] {
  return readdirSync(join(dir, pre), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listFiles(dir, join(pre, e.name)) : e.name === 'metrics.jsonl' ? [] : [join(pre, e.name)],
  );
}

for (const [optimizer, sae] of [
  ['adam', { expansionFactor: 4, k: 8 }],
  ['signum', { expansionFactor: 4, k: 8 }],
  ['muon', { expansionFactor: 4, k: 8 }],
  ['adam', { expansionFactor: 4, k: 8, transcode: true, skipConnection: true, multiTopk: true }],
  ['muon', { expansionFactor: 4, k: 8, transcode: true, skipConnection: true, multiTopk: true }],
] as const) {
  const what = sae.multiTopk ? ', transcoder with skip_connection + multi_topk' : '';
  test(`Trainer on cuda vs cpu (${optimizer}${what}, micro-batches): losses close; checkpoints have the CPU layout; resume`, opts, async () => {
    const init: TrainConfigInit = {
      batchSize: 4,
      microAccSteps: 2,
      optimizer,
      lr: 2e-3,
      sae: { ...sae },
      ...(sae.transcode ? { hookpoints: ['h.0.mlp', 'h.1.mlp'] } : {}),
    };
    const c = await run('cpu', { ...init, saveDir: tmp() });
    const gdir = tmp();
    const gg = await run('cuda', { ...init, saveDir: gdir });
    assert.equal(gg.result.steps, c.result.steps);
    for (const h of sae.transcode ? ['h.0.mlp', 'h.1.mlp'] : ['h.0', 'h.1']) {
      const a = c.steps.at(-1)!.coders[h], b = gg.steps.at(-1)!.coders[h];
      assert.ok(close(b.fvu, a.fvu, 0.1), `${h} final fvu ${b.fvu} vs ${a.fvu}`);
    }
    // Same files, same tensor names and shapes as the CPU trainer writes.
    assert.deepEqual(listFiles(gg.runDir).sort(), listFiles(c.runDir).sort());
    for (const f of listFiles(c.runDir).filter((f) => f.endsWith('.safetensors'))) {
      const a = loadSafetensors(join(c.runDir, f)), b = loadSafetensors(join(gg.runDir, f));
      assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort(), f);
      for (const [k, t] of a) assert.deepEqual(b.get(k)!.shape, t.shape, `${f} ${k}`);
    }
    // Stop half way on cuda, resume on cuda: the same number of steps in the end.
    const rdir = tmp();
    const half = await run('cuda', { ...init, saveDir: rdir }, { stopAt: 2 });
    assert.equal(half.result.steps, 2);
    const rest = await run('cuda', { ...init, saveDir: rdir }, { resume: true });
    assert.equal(rest.result.steps, c.result.steps);
    // A cuda checkpoint resumes on cpu too (the files are the CPU trainer's).
    assert.ok(existsSync(join(rdir, 'r', 'optimizer_0.safetensors')) && existsSync(join(rdir, 'r', 'optimizer_0.json')));
    const cpuResume = await run('cpu', { ...init, saveDir: rdir }, { resume: true });
    assert.equal(cpuResume.result.steps, c.result.steps);
  });
}
