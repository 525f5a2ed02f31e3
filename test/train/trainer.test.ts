/** End-to-end training on the tiny GPT-2 of the fixtures (64 sequences of 64 tokens). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import { ConfigError, SparseCoder, ValueError, loadSafetensors } from '@sparsify/core';
import { Trainer, trainConfig, loadInt64Safetensors, type StepInfo, type TrainConfigInit, type LogInfo } from '@sparsify/train';

import { fixtureDataset, maxAbsDiff, tinyModel, tmp } from './helpers.js';

async function run(init: TrainConfigInit, opts: { rows?: number; stopAt?: number; resume?: boolean; initFrom?: string; saves?: number[] } = {}) {
  const cfg = trainConfig({ logToWandb: false, runName: 'r', ...init });
  const steps: StepInfo[] = [];
  const logs: LogInfo[] = [];
  let trainer: Trainer;
  trainer = new Trainer(cfg, fixtureDataset(opts.rows), await tinyModel(), {
    initFrom: opts.initFrom,
    onStep: (s) => {
      steps.push(s);
      if (opts.stopAt !== undefined && s.step === opts.stopAt) trainer.requestStop();
    },
    onLog: (l) => logs.push(l),
    onSave: (_dir, step) => opts.saves?.push(step),
  });
  if (opts.resume) await trainer.loadState();
  const result = await trainer.fit();
  return { trainer, steps, logs, result, runDir: join(cfg.saveDir, 'r') };
}

function weights(dir: string): Map<string, Float32Array> {
  return new Map([...loadSafetensors(join(dir, 'sae.safetensors'))].map(([k, t]) => [k, t.toFloat32Array()]));
}

test('a short adam run writes a checkpoint SparseCoder.loadFromDisk reads, FVU falls, metrics.jsonl per step', async () => {
  const saveDir = tmp();
  const r = await run({ saveDir, batchSize: 4, lrWarmupSteps: 2, lr: 3e-3, sae: { expansionFactor: 4, k: 8 } });
  assert.equal(r.trainer.cfg.optimizer, 'adam');
  assert.deepEqual(r.trainer.hookpoints, ['h.0', 'h.1']);
  assert.equal(r.result.steps, 16);
  assert.equal(r.result.tokens, 64 * 64);
  const first = r.steps[1].coders['h.0'].fvu;
  const last = r.steps.at(-1)!.coders['h.0'].fvu;
  assert.ok(last < 0.9 * first, `fvu ${first} -> ${last}`);
  for (const h of ['h.0', 'h.1']) {
    const coder = await SparseCoder.loadFromDisk(join(r.runDir, h));
    assert.equal(coder.dIn, 64);
    assert.equal(coder.numLatents, 256);
    const x = (await (await tinyModel()).forward(
      (await import('@sparsify/core')).Tensor.from(fixtureDataset().rows([0, 1]), [2, 64]),
      { hookpoints: [h] },
    )).captured.get(h)!;
    const out = await coder.forward(x);
    assert.ok(out.fvu < first, `reloaded ${h} fvu ${out.fvu}`);
    coder.dispose();
  }
  // Adam LR: HF linear warmup (2 steps) then linear decay to 0 over 16 batches.
  const lrs = r.steps.map((s) => s.lr[0] / 3e-3);
  assert.deepEqual(lrs.slice(0, 3), [0, 0.5, 1]);
  for (let i = 2; i < 16; i++) assert.ok(Math.abs(lrs[i] - (16 - i) / 14) < 1e-12, `lr multiplier at step ${i + 1}: ${lrs[i]}`);
  const lines = readFileSync(join(r.runDir, 'metrics.jsonl'), 'utf-8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 16);
  assert.equal(lines[0].step, 1);
  assert.ok('fvu/h.0' in lines[0] && 'dead_pct/h.1' in lines[0]);
  const config = JSON.parse(readFileSync(join(r.runDir, 'config.json'), 'utf-8'));
  assert.deepEqual(config.hookpoints, ['h.0', 'h.1']);
  assert.deepEqual(config.layers, [0, 1]);
  assert.equal(config.lr, 3e-3);
  assert.ok(existsSync(join(r.runDir, 'optimizer_0.safetensors')));
  assert.ok(existsSync(join(r.runDir, 'trainer_state.json')));
  assert.ok(!existsSync(join(r.runDir, 'train_iterate')), 'adam has no separate training iterate');
});

test('resume: N steps == N/2, stop, resume, N/2 (signum, adam, muon; same weights and data order)', async () => {
  for (const optimizer of ['signum', 'adam', 'muon'] as const) {
    const common: TrainConfigInit = { optimizer, batchSize: 8, lrWarmupSteps: 2, auxkAlpha: 1 / 32, deadFeatureThreshold: 600, sae: { expansionFactor: 4, k: 8 } };
    const a = await run({ ...common, saveDir: tmp() });
    const dir = tmp();
    const b1 = await run({ ...common, saveDir: dir }, { stopAt: 4 });
    assert.equal(b1.result.stopped, true);
    assert.equal(b1.result.steps, 4);
    const b2 = await run({ ...common, saveDir: dir }, { resume: true });
    assert.equal(b2.result.steps, 8);
    assert.equal(b2.steps[0].step, 5);
    // Same per-step metrics as the uninterrupted run (same data order, same state).
    for (let i = 0; i < 4; i++)
      for (const h of ['h.0', 'h.1']) {
        const x = a.steps[4 + i].coders[h];
        const y = b2.steps[i].coders[h];
        assert.ok(Math.abs(x.fvu - y.fvu) <= 1e-5 * x.fvu, `${optimizer} ${h} step ${5 + i}: fvu ${x.fvu} vs resumed ${y.fvu}`);
        assert.equal(x.numDead, y.numDead);
      }
    for (const h of ['h.0', 'h.1']) {
      const wa = weights(join(a.runDir, h));
      const wb = weights(join(b2.runDir, h));
      for (const [k, v] of wa) assert.ok(maxAbsDiff(v, wb.get(k)!) <= 1e-5, `${optimizer} ${h} ${k}: max diff ${maxAbsDiff(v, wb.get(k)!)}`);
    }
    assert.deepEqual([...loadInt64Safetensors(join(a.runDir, 'dead_counters.safetensors')).get('h.1')!], [...loadInt64Safetensors(join(b2.runDir, 'dead_counters.safetensors')).get('h.1')!]);
    // metrics.jsonl continues across the resume
    const lines = readFileSync(join(b2.runDir, 'metrics.jsonl'), 'utf-8').trim().split('\n');
    assert.equal(lines.length, 8);
  }
});

test('micro_acc_steps really splits the batch and matches the unsplit step (PR #138)', async () => {
  const common: TrainConfigInit = { optimizer: 'adam', batchSize: 16, lrWarmupSteps: 0, sae: { expansionFactor: 4, k: 8 } };
  const a = await run({ ...common, saveDir: tmp() }, { rows: 16 });
  const b = await run({ ...common, microAccSteps: 4, saveDir: tmp() }, { rows: 16 });
  for (const h of ['h.0', 'h.1']) {
    // The mean of the chunk FVUs (each over full-batch variance x chunk fraction) is the batch FVU.
    assert.ok(Math.abs(a.steps[0].coders[h].fvu - b.steps[0].coders[h].fvu) <= 1e-5, `${h} fvu`);
    const wa = weights(join(a.runDir, h));
    const wb = weights(join(b.runDir, h));
    const w0 = weights(join(a.runDir, h)); // shapes only
    for (const k of w0.keys()) {
      const x = wa.get(k)!;
      const y = wb.get(k)!;
      let dot = 0, nx = 0, ny = 0;
      for (let i = 0; i < x.length; i++) {
        dot += x[i] * y[i];
        nx += x[i] * x[i];
        ny += y[i] * y[i];
      }
      assert.ok(dot / Math.sqrt(nx * ny) > 0.99999 || nx === 0, `${h} ${k}: cosine ${dot / Math.sqrt(nx * ny)}`);
    }
  }
});

test('transcoder mode, several hookpoints, k decay, grad accumulation', async () => {
  const r = await run({ saveDir: tmp(), hookpoints: ['h.*.mlp', 'h.0.attn'], batchSize: 4, gradAccSteps: 2, kDecaySteps: 6, sae: { transcode: true, expansionFactor: 2, k: 4 } });
  assert.deepEqual(r.trainer.hookpoints, ['h.0.attn', 'h.0.mlp', 'h.1.mlp']);
  assert.equal(r.result.steps, 8);
  // initial_k = min(128, round(10 * 64)) = 128, decaying per batch over 6 batches; a step reports
  // the k of its last batch (batch 2i+1): round(128 - 124 * (2i+1)/6), banker's rounding.
  assert.deepEqual(r.steps.map((s) => s.k), [107, 66, 25, 4, 4, 4, 4, 4]);
  for (const h of r.trainer.hookpoints) {
    const cfg = JSON.parse(readFileSync(join(r.runDir, h, 'cfg.json'), 'utf-8'));
    assert.equal(cfg.transcode, true);
    assert.equal(cfg.k, 4);
  }
});

test('several init_seeds train separate coders named hook/seedN', async () => {
  const r = await run({ saveDir: tmp(), layers: [1], initSeeds: [0, 7], batchSize: 8, sae: { expansionFactor: 2, k: 4 } });
  assert.deepEqual(r.trainer.coders.map((c) => c.name), ['h.1/seed0', 'h.1/seed7']);
  const a = weights(join(r.runDir, 'h.1', 'seed0'));
  const b = weights(join(r.runDir, 'h.1', 'seed7'));
  assert.ok(maxAbsDiff(a.get('encoder.weight')!, b.get('encoder.weight')!) > 1e-3, 'seeds give different coders');
  for (const s of r.steps) assert.ok(s.coders['h.1/seed0'].fvu > 0 && s.coders['h.1/seed7'].fvu > 0);
  assert.deepEqual(readdirSync(r.runDir).filter((n) => n.startsWith('h.')), ['h.1']);
});

test('exclude_tokens removes those positions; dead counters count only kept tokens', async () => {
  const ds = fixtureDataset(8);
  const ids = ds.rows([0, 1, 2, 3, 4, 5, 6, 7]);
  const counts = new Map<number, number>();
  for (const t of ids) counts.set(t, (counts.get(t) ?? 0) + 1);
  const [common] = [...counts.entries()].sort((a, b) => b[1] - a[1])[0];
  const excluded = counts.get(common)!;
  const r = await run({ saveDir: tmp(), excludeTokens: [common], batchSize: 8, deadFeatureThreshold: 1e9, sae: { expansionFactor: 2, k: 4 } }, { rows: 8 });
  assert.equal(r.result.tokens, 8 * 64 - excluded);
  const c = loadInt64Safetensors(join(r.runDir, 'dead_counters.safetensors')).get('h.0')!;
  for (const v of c) assert.ok(v === 0 || v === 8 * 64 - excluded);
});

test('save_every, save_best (best/{name}/{name}/), wandb_log_frequency averages over the window', async () => {
  const saves: number[] = [];
  const r = await run({ saveDir: tmp(), batchSize: 4, saveEvery: 4, saveBest: true, wandbLogFrequency: 4, sae: { expansionFactor: 2, k: 4 } }, { saves });
  // save_every 4 over 16 steps: steps 4, 8, 12 and the final save (16); best/ saves in between.
  assert.deepEqual([...new Set(saves)], [4, 8, 12, 16]);
  for (const h of ['h.0', 'h.1']) {
    assert.ok(existsSync(join(r.runDir, 'best', h, h, 'sae.safetensors')), `best/${h}/${h}`);
    assert.ok(existsSync(join(r.runDir, 'best', h, 'trainer_state.json')));
  }
  assert.equal(r.logs.length, 4);
  const want = r.steps.slice(4, 8).reduce((a, s) => a + s.coders['h.0'].fvu, 0) / 4;
  assert.ok(Math.abs(r.logs[1].values['fvu/h.0'] - want) < 1e-12, 'log = mean of the 4 steps');
});

test('finetune starts from given coders and skips the bias init; bad settings are ConfigErrors', async () => {
  const base = await run({ saveDir: tmp(), batchSize: 16, sae: { expansionFactor: 2, k: 4 } });
  const ft = await run({ saveDir: tmp(), batchSize: 16, finetune: base.runDir, sae: { expansionFactor: 2, k: 4 } }, { rows: 16 });
  assert.ok(ft.steps[0].coders['h.0'].fvu < base.steps[0].coders['h.0'].fvu, 'finetuned coder starts better');
  await assert.rejects(run({ saveDir: tmp(), finetune: base.runDir, sae: { expansionFactor: 4, k: 4 } }, { rows: 8 }), ConfigError);
  await assert.rejects(run({ saveDir: tmp(), hookpoints: ['nothing.*'] }, { rows: 8 }), /nothing/);
  await assert.rejects(run({ saveDir: tmp(), hookpoints: ['h.0.mlp.c_fc'], sae: { transcode: true } }, { rows: 8 }), /input width/);
  await assert.rejects(run({ saveDir: tmp() }, { rows: 8, resume: true }), /no complete checkpoint/);
});

test('groupmax, skip connection and multi-TopK coders train and save their settings', async () => {
  const r = await run({ saveDir: tmp(), batchSize: 8, lr: 3e-3, lrWarmupSteps: 1, sae: { activation: 'groupmax', skipConnection: true, multiTopk: true, expansionFactor: 2, k: 8 } }, { rows: 32 });
  assert.equal(r.result.steps, 4);
  for (const h of ['h.0', 'h.1']) {
    assert.ok(r.steps[3].coders[h].fvu < r.steps[0].coders[h].fvu, `${h} fvu falls`);
    assert.ok(r.steps[0].coders[h].multiTopkFvu > 0, 'multi-TopK term computed');
    const coder = await SparseCoder.loadFromDisk(join(r.runDir, h));
    assert.equal(coder.cfg.activation, 'groupmax');
    assert.equal(coder.cfg.skipConnection, true);
    assert.ok(coder.params().has('W_skip'));
    coder.dispose();
  }
});

test('a stop in the middle of a grad-accumulation window rewinds to its start; resume matches', async () => {
  const common: TrainConfigInit = { optimizer: 'adam', batchSize: 4, gradAccSteps: 2, lrWarmupSteps: 1, layers: [0], sae: { expansionFactor: 2, k: 4 } };
  const full = await run({ ...common, saveDir: tmp() }, { rows: 32 });
  assert.equal(full.result.steps, 4);
  // Stop while batch 3 (the first of window 2) is being read.
  const dir = tmp();
  const cfg = trainConfig({ logToWandb: false, runName: 'r', saveDir: dir, ...common });
  const ds = fixtureDataset(32);
  let calls = 0;
  let trainer: Trainer;
  const stopping = { length: ds.length, ctxLen: ds.ctxLen, rows: (i: readonly number[] | Int32Array) => (++calls === 3 && trainer.requestStop(), ds.rows(i)) };
  trainer = new Trainer(cfg, stopping, await tinyModel());
  const r1 = await trainer.fit();
  assert.equal(r1.stopped, true);
  assert.equal(r1.steps, 1);
  assert.equal(r1.batches, 2, 'rewound to the start of the unfinished window');
  const st = JSON.parse(readFileSync(join(dir, 'r', 'trainer_state.json'), 'utf-8'));
  assert.equal(st.global_step, 2);
  const r2 = await run({ ...common, saveDir: dir }, { rows: 32, resume: true });
  assert.equal(r2.result.steps, 4);
  const wa = weights(join(full.runDir, 'h.0'));
  const wb = weights(join(r2.runDir, 'h.0'));
  for (const [k, v] of wa) assert.ok(maxAbsDiff(v, wb.get(k)!) <= 1e-5, `${k}: ${maxAbsDiff(v, wb.get(k)!)}`);
});

test('hookpoint selection: patterns natsorted then layer_stride; layers; widths per hookpoint', async () => {
  const model = await tinyModel();
  const mk = async (init: TrainConfigInit) => {
    const t = new Trainer(trainConfig({ logToWandb: false, saveDir: tmp(), ...init }), fixtureDataset(8), model, { save: false });
    await t.init();
    return t;
  };
  const a = await mk({ hookpoints: ['h.*.mlp', 'h.*.attn'], layerStride: 2 });
  assert.deepEqual(a.hookpoints, ['h.0.attn', 'h.1.attn']);
  const b = await mk({ layers: [1] });
  assert.deepEqual(b.hookpoints, ['h.1']);
  assert.deepEqual(b.cfg.layers, [1]);
  const c = await mk({ hookpoints: ['h.0.mlp.act', 'h.0'], sae: { expansionFactor: 1 } });
  assert.deepEqual(c.coders.map((e) => [e.name, e.coder.dIn, e.coder.numLatents]), [['h.0', 64, 64], ['h.0.mlp.act', 256, 256]]);
  const d = await mk({ layerStride: 2 });
  assert.deepEqual(d.hookpoints, ['h.0']);
});

test('init() claims the run folder until close(); fit() releases it', async () => {
  const dir = tmp();
  const cfg = trainConfig({ logToWandb: false, runName: 'r', saveDir: dir, batchSize: 4, layers: [0], sae: { expansionFactor: 2, k: 4 } });
  const model = await tinyModel();
  const a = new Trainer(cfg, fixtureDataset(8), model);
  await a.init();
  assert.ok(existsSync(join(dir, 'r.lock')));
  const b = new Trainer(cfg, fixtureDataset(8), model, { overwrite: true });
  await assert.rejects(b.init(), (e: Error) => e instanceof ConfigError && /in use by another training process/.test(e.message));
  a.close();
  a.close();
  assert.ok(!existsSync(join(dir, 'r.lock')));
  assert.ok(a.coders.length > 0, 'the coders stay after close()');
  // b may own the folder now: a closed trainer neither trains nor saves into it.
  for (const f of [() => a.fit(), () => a.init(), () => a.loadState(), () => a.save()])
    await assert.rejects(f(), (e: Error) => e instanceof ValueError && /was closed/.test(e.message));
  let closeDuringFit: unknown;
  b.once('step', () => {
    try {
      b.close();
    } catch (e) {
      closeDuringFit = e;
    }
  });
  const r = await b.fit();
  assert.ok(closeDuringFit instanceof ValueError && /fit\(\) is running/.test(closeDuringFit.message), 'close() during fit() is refused');
  assert.equal(r.steps, 2);
  assert.ok(!existsSync(join(dir, 'r.lock')), 'fit() released its claim');
  b.close();
});
