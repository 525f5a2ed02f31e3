// The Trainer API with the SAELens kinds: N steps == N/2, stop, resume, N/2 (log_threshold and its
// Adam moments, BatchTopK's running threshold, the dead-latent counters and the L0 warm-up all
// carry over), on the tiny GPT-2 of the fixtures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';

import { loadSafetensors } from '@sparsify/core';
import { Trainer, trainConfig, type StepInfo, type TrainConfigInit } from '@sparsify/train';

import { fixtureDataset, maxAbsDiff, tinyModel, tmp } from './helpers.js';

async function run(init: TrainConfigInit, opts: { stopAt?: number; resume?: boolean } = {}) {
  const cfg = trainConfig({ logToWandb: false, runName: 'r', ...init });
  const steps: StepInfo[] = [];
  const trainer: Trainer = new Trainer(cfg, fixtureDataset(), await tinyModel(), {
    onStep: (s) => {
      steps.push(s);
      if (opts.stopAt !== undefined && s.step === opts.stopAt) trainer.requestStop();
    },
  });
  if (opts.resume) await trainer.loadState();
  const result = await trainer.fit();
  return { steps, result, runDir: join(cfg.saveDir, 'r') };
}

const weights = (dir: string) => new Map([...loadSafetensors(join(dir, 'sae.safetensors'))].map(([k, t]) => [k, t.toFloat32Array()]));

for (const sae of [
  { activation: 'jumprelu' as const, expansionFactor: 4, jumpreluInitThreshold: 0.3 },
  { activation: 'batchtopk' as const, expansionFactor: 4, k: 8, topkThresholdLr: 0.1, matryoshkaPrefixes: [64] },
]) {
  test(`${sae.activation}${sae.matryoshkaPrefixes ? ' (Matryoshka)' : ''}: stop at step 4, resume, equals the uninterrupted run`, async () => {
    const common: TrainConfigInit = { batchSize: 8, lrWarmupSteps: 2, lr: 3e-3, hookpoints: ['h.0'], deadFeatureThreshold: 600, l0WarmUpSteps: 6, sae };
    const a = await run({ ...common, saveDir: tmp() });
    const dir = tmp();
    const b1 = await run({ ...common, saveDir: dir }, { stopAt: 4 });
    assert.equal(b1.result.steps, 4);
    const b2 = await run({ ...common, saveDir: dir }, { resume: true });
    assert.equal(b2.result.steps, 8);
    for (let i = 0; i < 4; i++) {
      const x = a.steps[4 + i].coders['h.0'], y = b2.steps[i].coders['h.0'];
      assert.ok(Math.abs(x.fvu - y.fvu) <= 1e-6 * x.fvu, `step ${5 + i}: fvu ${x.fvu} vs resumed ${y.fvu}`);
      assert.equal(x.numDead, y.numDead);
    }
    const wa = weights(join(a.runDir, 'h.0')), wb = weights(join(b2.runDir, 'h.0'));
    assert.deepEqual([...wa.keys()].sort(), [...wb.keys()].sort());
    assert.ok(wa.has(sae.activation === 'jumprelu' ? 'log_threshold' : 'topk_threshold'));
    for (const [k, v] of wa) assert.ok(maxAbsDiff(v, wb.get(k)!) === 0, `${k}: max diff ${maxAbsDiff(v, wb.get(k)!)}`);
  });
}
