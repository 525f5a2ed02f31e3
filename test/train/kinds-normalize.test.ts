// normalize_activations expected_average_only_in in the Trainer: s from n_batches_for_norm_estimate
// batches (a separate read pass that skips no training batch), resume equal to the uninterrupted
// run, fine-tuning from a normalized run, and evaluation during training in raw units; and the
// kinds' default gradient clipping (max_grad_norm) in the step metrics. Tiny GPT-2 of the fixtures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { FileFormatError, loadSafetensors, SparseCoder, Tensor } from '@sparsify/core';
import { evaluate, NormScaleEstimate, Trainer, trainConfig, type StepInfo, type TrainConfigInit, type TrainerOptions } from '@sparsify/train';

import { fixtureDataset, maxAbsDiff, tinyModel, tmp } from './helpers.js';

async function run(init: TrainConfigInit, opts: { stopAt?: number; resume?: boolean; trainer?: TrainerOptions } = {}) {
  const cfg = trainConfig({ logToWandb: false, runName: 'r', ...init });
  const steps: StepInfo[] = [];
  const trainer: Trainer = new Trainer(cfg, fixtureDataset(), await tinyModel(), {
    ...opts.trainer,
    onStep: (s) => {
      steps.push(s);
      if (opts.stopAt !== undefined && s.step === opts.stopAt) trainer.requestStop();
    },
  });
  if (opts.resume) await trainer.loadState();
  const result = await trainer.fit();
  return { steps, result, runDir: join(cfg.saveDir, 'r'), trainer };
}

const weights = (dir: string) => new Map([...loadSafetensors(join(dir, 'sae.safetensors'))].map(([k, t]) => [k, t.toFloat32Array()]));
const scaler = (runDir: string) => JSON.parse(readFileSync(join(runDir, 'activation_scaler.json'), 'utf8')) as Record<string, number>;

const COMMON: TrainConfigInit = {
  batchSize: 8, lrWarmupSteps: 2, lr: 3e-3, hookpoints: ['h.0'], deadFeatureThreshold: 600,
  normalizeActivations: 'expected_average_only_in', nBatchesForNormEstimate: 3,
  sae: { activation: 'relu', expansionFactor: 4 }, l1Coefficient: 0.5, l1WarmUpSteps: 3,
};

test('s is the mean over the first n_batches_for_norm_estimate batches; every batch is still trained on', async () => {
  const r = await run({ ...COMMON, saveDir: tmp() });
  const model = await tinyModel();
  const data = fixtureDataset();
  const est = new NormScaleEstimate(model.hookpoints().find((h) => h.name === 'h.0')!.width);
  for (let b = 0; b < 3; b++) {
    const ids = await data.rows(Array.from({ length: 8 }, (_, i) => b * 8 + i));
    const t = Tensor.from(Int32Array.from(ids), [8, data.ctxLen]);
    const out = await model.forward(t, { hookpoints: ['h.0'] });
    est.add(out.captured.get('h.0')!.toFloat32Array());
    t.dispose();
    for (const x of out.captured.values()) x.dispose();
  }
  const s = scaler(r.runDir)['h.0'];
  assert.ok(Math.abs(s - est.factor()) <= 1e-12 * s, `s ${s} vs ${est.factor()} recomputed`);
  assert.equal(r.result.batches, Math.ceil(data.length / 8), 'no batch skipped');
  assert.equal(r.result.tokens, data.length * data.ctxLen, 'every token trained on');
  // The run folder: the saved coder (s folded in) and the training iterate (on s·x) for resume.
  assert.ok(existsSync(join(r.runDir, 'h.0', 'train_iterate', 'sae.safetensors')));
  const folded = weights(join(r.runDir, 'h.0')), raw = weights(join(r.runDir, 'h.0', 'train_iterate'));
  assert.ok(maxAbsDiff(folded.get('W_dec')!, raw.get('W_dec')!.map((v) => v / s)) <= 1e-6);
  // The kinds clip by default (SAELens max_grad_norm 1.0): the pre-clip norm is in the step metrics.
  const cfg = JSON.parse(readFileSync(join(r.runDir, 'config.json'), 'utf8'));
  assert.equal(cfg.max_grad_norm, 1.0);
  assert.equal(cfg.n_batches_for_norm_estimate, 3);
  const metrics = readFileSync(join(r.runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(metrics.every((m) => Number.isFinite(m['grad_norm/h.0']) && m['grad_norm/h.0'] > 0), 'grad_norm/h.0 logged every step');
  assert.ok(r.steps.every((s) => s.coders['h.0'].gradNorm! > 0));
});

test('normalize_activations: stop at step 4, resume, equals the uninterrupted run (s read back)', async () => {
  const a = await run({ ...COMMON, saveDir: tmp() });
  const dir = tmp();
  const b1 = await run({ ...COMMON, saveDir: dir }, { stopAt: 4 });
  assert.equal(b1.result.steps, 4);
  const b2 = await run({ ...COMMON, saveDir: dir }, { resume: true });
  assert.equal(b2.result.steps, a.result.steps);
  assert.deepEqual(scaler(b2.runDir), scaler(a.runDir));
  for (let i = 0; i < a.steps.length - 4; i++) {
    const x = a.steps[4 + i].coders['h.0'], y = b2.steps[i].coders['h.0'];
    assert.equal(y.fvu, x.fvu, `step ${5 + i}: fvu`);
    assert.equal(y.gradNorm, x.gradNorm, `step ${5 + i}: grad norm`);
  }
  for (const sub of ['h.0', join('h.0', 'train_iterate')]) {
    const wa = weights(join(a.runDir, sub)), wb = weights(join(b2.runDir, sub));
    for (const [k, v] of wa) assert.equal(maxAbsDiff(v, wb.get(k)!), 0, `${sub} ${k}`);
  }
});

test('normalize_activations: a checkpoint without train_iterate/ resumes from the unfolded coder; a bad activation_scaler.json is a FileFormatError', async () => {
  const a = await run({ ...COMMON, saveDir: tmp() });
  const dir = tmp();
  await run({ ...COMMON, saveDir: dir }, { stopAt: 4 });
  const runDir = join(dir, 'r');
  const copy = tmp();
  cpSync(runDir, join(copy, 'r'), { recursive: true });
  rmSync(join(runDir, 'h.0', 'train_iterate'), { recursive: true });
  const b = await run({ ...COMMON, saveDir: dir }, { resume: true });
  const wa = weights(join(a.runDir, 'h.0')), wb = weights(join(b.runDir, 'h.0'));
  for (const [k, v] of wa) {
    let mx = 0;
    for (const x of v) mx = Math.max(mx, Math.abs(x));
    assert.ok(maxAbsDiff(v, wb.get(k)!) <= 1e-3 * Math.max(mx, 1e-3), `${k}: ${maxAbsDiff(v, wb.get(k)!)} (max ${mx})`);
  }
  writeFileSync(join(copy, 'r', 'activation_scaler.json'), JSON.stringify({ 'h.0': -1 }));
  await assert.rejects(run({ ...COMMON, saveDir: copy }, { resume: true }), (e: Error) => e instanceof FileFormatError && /activation_scaler\.json: field 'h\.0' must be a finite number > 0/.test(e.message));
  rmSync(join(copy, 'r', 'activation_scaler.json'));
  await assert.rejects(run({ ...COMMON, saveDir: copy }, { resume: true }), (e: Error) => e instanceof FileFormatError && /activation_scaler\.json: missing/.test(e.message));
});

test('normalize_activations: --finetune from a normalized run starts from the same function', async () => {
  const src = await run({ ...COMMON, saveDir: tmp() });
  // A near-zero lr: the fine-tuned coders stay the source's, unfolded and folded again by the same s.
  const ft = await run({ ...COMMON, saveDir: tmp(), finetune: src.runDir, lr: 1e-12, lrWarmupSteps: 0 });
  assert.deepEqual(scaler(ft.runDir), scaler(src.runDir), 'the same data: the same s');
  const wa = weights(join(src.runDir, 'h.0')), wb = weights(join(ft.runDir, 'h.0'));
  for (const [k, v] of wa) {
    let mx = 0;
    for (const x of v) mx = Math.max(mx, Math.abs(x));
    assert.ok(maxAbsDiff(v, wb.get(k)!) <= 1e-5 * Math.max(mx, 1e-3), `${k}: ${maxAbsDiff(v, wb.get(k)!)}`);
  }
  // Its first training step reconstructs as well as the source's last one (same coder, s·x).
  const last = src.steps.at(-1)!.coders['h.0'].fvu, first = ft.steps[0].coders['h.0'].fvu;
  assert.ok(first < src.steps[0].coders['h.0'].fvu, `fine-tuned first fvu ${first}, source first ${src.steps[0].coders['h.0'].fvu}, last ${last}`);
});

test('normalize_activations: evaluation during training measures the raw-unit coders, as the saved run', async () => {
  const data = fixtureDataset();
  const heldOut = { length: 8, ctxLen: data.ctxLen, rows: (idx: readonly number[] | Int32Array) => data.rows(Int32Array.from(idx, (i) => i)) };
  const r = await run({ ...COMMON, saveDir: tmp() }, { trainer: { evaluation: { dataset: heldOut, every: 2 } } });
  const metrics = readFileSync(join(r.runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(metrics.filter((m) => 'eval/tokens' in m).length >= 2, 'eval records');
  const final = JSON.parse(readFileSync(join(r.runDir, 'eval.json'), 'utf8'));
  const model = await tinyModel();
  const coder = await SparseCoder.loadFromDisk(join(r.runDir, 'h.0'));
  const saved = await evaluate(model as never, { 'h.0': coder as never }, heldOut);
  coder.dispose();
  const a = final.hookpoints['h.0'].fvu as number, b = saved.hookpoints['h.0'].fvu as number;
  assert.ok(Math.abs(a - b) <= 1e-4 * b, `eval.json fvu ${a} vs the saved coder's ${b}`);
  assert.ok(a < 1, `fvu ${a}`);
});
