// The TypeScript side of `device: 'cuda'` (SparseCoder, adam/signum, Trainer, CLI) run against a CPU
// STAND-IN of the cudaSae* bindings (./standin.ts): with the same arithmetic underneath, a cuda run
// must equal the cpu run bit for bit, so any bookkeeping slip (Adam's step, signum's ckp1, the
// projection flag, eval/train lerps, micro-batch rows, didFire, state dicts, resume) shows up here.
// This checks the wiring only — NOT the CUDA kernels (never run on a GPU; see test/cuda/coder.test.ts).
// Skipped where a real GPU is usable (the real tests run there instead).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { createOptimizer, cudaUsable, loadSafetensors, SparseCoder, Tensor } from '@sparsify/core';
import { main } from '@sparsify/cli';
import { Trainer, trainConfig, type TrainConfigInit } from '@sparsify/train';

import { FIXTURES as SAE_FIXTURES, loadGolden } from '../sae/helpers.js';
import { fixtureDataset, tinyModel, tmp } from '../train/helpers.js';
import { installCudaStandIn } from './standin.js';

const skip = cudaUsable() ? 'a real GPU is usable: test/cuda/coder.test.ts covers it' : false;
const calls = skip ? new Map<string, number>() : installCudaStandIn();
const opts = { skip };
const arr = (t: Tensor) => (t.dtype === 'int32' ? [...t.toInt32Array()] : [...t.toFloat32Array()]);

for (const variant of ['sae_d64_k8', 'sae_d64_k8_groupmax', 'transcoder_d64_k8', 'sae_d64_k8_multitopk', 'transcoder_d64_k8_skip']) {
  test(`stand-in wiring ${variant}: cuda encode/decode/forward equal the cpu coder`, opts, async () => {
    const dir = join(SAE_FIXTURES, variant, 'state');
    const g = loadGolden(variant);
    const cpu = await SparseCoder.loadFromDisk(dir);
    const gpu = await SparseCoder.loadFromDisk(dir, { device: 'cuda' });
    const x = g.get('x')!, y = g.get('y');
    const before = calls.get('cudaSaeEncode') ?? 0;
    const a = await cpu.encode(x), b = await gpu.encode(x);
    assert.equal(calls.get('cudaSaeEncode'), before + 1, 'went through cudaSaeEncode');
    assert.deepEqual(arr(b.topIndices), arr(a.topIndices));
    assert.deepEqual(arr(b.topActs), arr(a.topActs));
    assert.deepEqual(arr(await gpu.decode(a.topActs, a.topIndices)), arr(await cpu.decode(a.topActs, a.topIndices)));
    for (const dead of [undefined, g.get('dead_mask_many')]) {
      const fa = await cpu.forward(x, { y, deadMask: dead }), fb = await gpu.forward(x, { y, deadMask: dead });
      assert.equal(fb.fvu, fa.fvu);
      assert.equal(fb.auxkLoss, fa.auxkLoss);
      assert.equal(fb.multiTopkFvu, fa.multiTopkFvu);
      if (gpu.cfg.multiTopk) assert.ok(fb.multiTopkFvu > 0, 'multi_topk reaches the device call');
      assert.deepEqual(arr(fb.saeOut), arr(fa.saeOut));
      assert.deepEqual(arr(fb.latentIndices), arr(fa.latentIndices));
      assert.deepEqual(arr(fb.latentActs), arr(fa.latentActs));
    }
    // Encoder-only coders use the resident encoder.
    const enc = await SparseCoder.loadFromDisk(dir, { device: 'cuda', decoder: false });
    assert.deepEqual(arr((await enc.encode(x)).topIndices), arr(a.topIndices));
    await assert.rejects(enc.forward(x), /no decoder/);
    for (const c of [cpu, gpu, enc]) c.dispose();
  });
}

for (const [kind, variant] of [
  ['adam', 'sae_d64_k8'],
  ['signum', 'sae_d64_k8'],
  ['adam', 'sae_d64_k8_multitopk'],
  ['adam', 'transcoder_d64_k8_skip'],
  ['signum', 'transcoder_d64_k8_skip'],
  ['muon', 'sae_d64_k8'],
  ['muon', 'transcoder_d64_k8_skip'],
] as const) {
  test(`stand-in wiring ${kind} ${variant}: steps, grads, eval/train, state dicts equal the cpu optimizer`, opts, async () => {
    const dir = join(SAE_FIXTURES, variant, 'state');
    const g = loadGolden(variant);
    const x = g.get('x')!, dead = g.get('dead_mask_many')!;
    const cpu = await SparseCoder.loadFromDisk(dir);
    const gpu = await SparseCoder.loadFromDisk(dir, { device: 'cuda' });
    const oc = createOptimizer(kind, [cpu], { lr: 1e-3 }), og = createOptimizer(kind, [gpu], { lr: 1e-3 });
    const didC = Tensor.zeros([cpu.numLatents], { dtype: 'int32' }), didG = Tensor.zeros([gpu.numLatents], { dtype: 'int32' });
    for (let s = 0; s < 3; s++) {
      for (const mult of [0.5, 1]) {
        const o = { auxkAlpha: 1 / 32, deadMask: dead, lossScale: 0.5, didFire: s === 0 ? didC : undefined };
        const la = await cpu.forwardBackward(x, o);
        const lb = await gpu.forwardBackward(x, { ...o, didFire: s === 0 ? didG : undefined });
        assert.deepEqual(lb, la);
        if (s === 1 && mult === 0.5) {
          assert.throws(() => gpu.params(), /syncToHost/);
          const ga = await cpu.readGrads(), gb = await gpu.readGrads();
          assert.deepEqual([...gb.keys()].sort(), [...ga.keys()].sort(), 'the same parameters have gradients (W_skip too)');
          for (const [n, t] of ga) assert.deepEqual(arr(gb.get(n)!), arr(t), `grad ${n}`);
        }
        // muon takes a second multiplier (its Adam half); the others ignore it.
        await oc.step(mult, mult * 0.75);
        await og.step(mult, mult * 0.75);
      }
    }
    assert.deepEqual(arr(didG), arr(didC), 'didFire');
    if (kind === 'signum') {
      await oc.eval();
      await og.eval();
    }
    await gpu.syncToHost();
    for (const [n, t] of cpu.params()) assert.deepEqual(arr(gpu.params().get(n)!), arr(t), n);
    if (kind === 'signum') {
      await oc.train();
      await og.train();
    }
    const sa = await oc.readStateDict(), sb = await og.readStateDict();
    assert.deepEqual(sb.scalars, sa.scalars);
    assert.deepEqual([...sb.tensors.keys()], [...sa.tensors.keys()]);
    for (const [k, t] of sa.tensors) assert.deepEqual(arr(sb.tensors.get(k)!), arr(t), k);
    assert.throws(() => og.stateDict(), /readStateDict/);
    // zeroGrad is deferred to the next device call.
    await cpu.forwardBackward(x, { auxkAlpha: 0 });
    await gpu.forwardBackward(x, { auxkAlpha: 0 });
    cpu.zeroGrad();
    gpu.zeroGrad();
    for (const t of (await gpu.readGrads()).values()) assert.ok(t.toFloat32Array().every((v) => v === 0));
    // A state loaded into a fresh cuda optimizer continues exactly like the cpu one.
    const gpu2 = await SparseCoder.loadFromDisk(dir, { device: 'cuda' });
    await gpu.syncToHost();
    const tmpDir = tmp();
    await gpu.saveToDisk(tmpDir);
    gpu2.dispose();
    const gpu3 = await SparseCoder.loadFromDisk(tmpDir, { device: 'cuda' });
    const og3 = createOptimizer(kind, [gpu3], { lr: 1e-3 });
    og3.loadStateDict(sa);
    await cpu.forwardBackward(x, { auxkAlpha: 0 });
    await gpu3.forwardBackward(x, { auxkAlpha: 0 });
    await oc.step();
    await og3.step();
    await gpu3.syncToHost();
    for (const [n, t] of cpu.params()) assert.deepEqual(arr(gpu3.params().get(n)!), arr(t), `after resume ${n}`);
    for (const t of sb.tensors.values()) t.dispose();
    for (const o of [oc, og, og3]) o.dispose();
    for (const c of [cpu, gpu, gpu3]) c.dispose();
  });
}

async function run(device: 'cpu' | 'cuda', init: TrainConfigInit, o: { resume?: boolean; stopAt?: number } = {}) {
  const cfg = trainConfig({ logToWandb: false, runName: 'r', ...init });
  const trainer: Trainer = new Trainer(cfg, fixtureDataset(32), await tinyModel(), {
    device,
    onStep: (s) => {
      if (o.stopAt !== undefined && s.step === o.stopAt) trainer.requestStop();
    },
  });
  if (o.resume) await trainer.loadState();
  return trainer.fit();
}

function files(dir: string, pre = ''): string[] {
  return readdirSync(join(dir, pre), { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? files(dir, join(pre, e.name)) : e.name === 'metrics.jsonl' ? [] : [join(pre, e.name)]))
    .sort();
}

function sameFolders(a: string, b: string): void {
  assert.deepEqual(files(b), files(a));
  for (const f of files(a)) {
    if (f.endsWith('config.json')) {
      // Equal but for save_dir (each run has its own temporary folder).
      const [ca, cb] = [a, b].map((d) => ({ ...JSON.parse(readFileSync(join(d, f), 'utf-8')), save_dir: undefined }));
      assert.deepEqual(cb, ca, f);
    } else assert.ok(readFileSync(join(a, f)).equals(readFileSync(join(b, f))), `${f} differs`);
  }
}

for (const [name, init] of [
  ['adam, grad_acc 2, micro-batches 2, AuxK', { optimizer: 'adam', gradAccSteps: 2, microAccSteps: 2, deadFeatureThreshold: 200, lrWarmupSteps: 2 }],
  ['signum, k decay', { optimizer: 'signum', kDecaySteps: 4 }],
  ['muon, warmup, grad_acc 2, AuxK', { optimizer: 'muon', gradAccSteps: 2, deadFeatureThreshold: 200, lrWarmupSteps: 2 }],
  ['adam transcoder, micro-batches 3', { optimizer: 'adam', microAccSteps: 3, hookpoints: ['h.0.mlp'], sae: { transcode: true, expansionFactor: 4, k: 8 } }],
  ['signum, multi_topk, AuxK', { optimizer: 'signum', deadFeatureThreshold: 200, sae: { multiTopk: true, expansionFactor: 4, k: 8 } }],
  [
    'adam transcoder, skip_connection + multi_topk, micro-batches 2',
    { optimizer: 'adam', microAccSteps: 2, hookpoints: ['h.0.mlp'], sae: { transcode: true, skipConnection: true, multiTopk: true, expansionFactor: 4, k: 8 } },
  ],
  ['signum transcoder, skip_connection', { optimizer: 'signum', hookpoints: ['h.0.mlp'], sae: { transcode: true, skipConnection: true, expansionFactor: 4, k: 8 } }],
] as [string, TrainConfigInit][]) {
  test(`stand-in wiring Trainer (${name}): the cuda run folder is byte-identical to cpu's; stop + resume on cuda too`, opts, async () => {
    const base: TrainConfigInit = { batchSize: 4, lr: 2e-3, saveEvery: 2, sae: { expansionFactor: 4, k: 8 }, ...init };
    const dc = tmp(), dg = tmp(), dr = tmp();
    await run('cpu', { ...base, saveDir: dc });
    const before = calls.get('cudaSaeForwardBackward') ?? 0;
    await run('cuda', { ...base, saveDir: dg });
    assert.ok((calls.get('cudaSaeForwardBackward') ?? 0) > before, 'the cuda run used the resident state');
    sameFolders(join(dc, 'r'), join(dg, 'r'));
    if (base.sae?.skipConnection) {
      const st = files(join(dg, 'r')).filter((f) => f.endsWith('sae.safetensors'));
      assert.ok(st.length > 0 && st.every((f) => loadSafetensors(join(dg, 'r', f)).has('W_skip')), 'W_skip is trained and saved');
    }
    const half = await run('cuda', { ...base, saveDir: dr }, { stopAt: 2 });
    assert.equal(half.steps, 2);
    await run('cuda', { ...base, saveDir: dr }, { resume: true });
    sameFolders(join(dc, 'r'), join(dr, 'r'));
  });
}

test('stand-in wiring Trainer (exclude_tokens, model on cpu): host activations are gathered, then trained on cuda; byte-identical to cpu', opts, async () => {
  const first = (await fixtureDataset(1).rows([0]))[0];
  const base: TrainConfigInit = { batchSize: 4, lr: 2e-3, excludeTokens: [first], sae: { expansionFactor: 4, k: 8 } };
  const dc = tmp(), dg = tmp();
  await run('cpu', { ...base, saveDir: dc });
  await run('cuda', { ...base, saveDir: dg });
  sameFolders(join(dc, 'r'), join(dg, 'r'));
});

test('stand-in wiring CLI: --device auto picks cuda when a device is seen (muon, multi_topk, skip_connection included)', opts, async () => {
  const cap = () => {
    const o = { out: '', err: '' };
    return { o, io: { stdout: { write: (s: string) => (o.out += s) }, stderr: { write: (s: string) => (o.err += s), isTTY: false, columns: 200 } } };
  };
  const dir = tmp();
  const a = cap();
  assert.equal(await main(['train', '--max_examples', '8', '--batch_size', '4', '--save_dir', dir, '--run_name', 'a'], a.io), 0, a.o.err);
  assert.match(a.o.err, /--device auto: using cuda/);
  const m = cap();
  const before = calls.get('cudaSaeApply:muon') ?? 0;
  assert.equal(await main(['train', '--optimizer', 'muon', '--max_examples', '8', '--batch_size', '4', '--save_dir', dir, '--run_name', 'm'], m.io), 0, m.o.err);
  assert.match(m.o.err, /--device auto: using cuda/);
  assert.ok((calls.get('cudaSaeApply:muon') ?? 0) > before, 'muon stepped through cudaSaeApply');
  const d = cap();
  const multi = ['--multi_topk', '--transcode', '--skip_connection', '--hookpoints', 'h.0.mlp'];
  assert.equal(await main(['train', ...multi, '--max_examples', '8', '--batch_size', '4', '--save_dir', dir, '--run_name', 'd'], d.io), 0, d.o.err);
  assert.match(d.o.err, /--device auto: using cuda/, 'multi_topk and skip_connection run on cuda');
});
