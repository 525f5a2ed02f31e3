import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ConfigError, defaultLr, linearWarmupDecay, pythonFloatRepr, pyJson, PyFloat } from '@sparsify/core';
import {
  assertSupportedLossFn,
  trainConfig,
  runConfig,
  trainConfigJson,
  trainConfigFromDict,
  DEFAULT_TRAIN_CONFIG,
  coderLr,
  roundHalfEven,
  currentK,
  initialK,
} from '@sparsify/train';

test('pythonFloatRepr matches Python repr(float)', () => {
  const cases: [number, string][] = [
    [1e-5, '1e-05'],
    [2, '2.0'],
    [0, '0.0'],
    [-0, '-0.0'],
    [0.03125, '0.03125'],
    [0.0001, '0.0001'],
    [0.00012, '0.00012'],
    [1e-4 / 3, '3.3333333333333335e-05'],
    [1e16, '1e+16'],
    [1.5e16, '1.5e+16'],
    [123456789012345.6, '123456789012345.6'],
    [1234567890123456.8, '1234567890123456.8'],
    [0.1 + 0.2, '0.30000000000000004'],
    [-2.5e-7, '-2.5e-07'],
    [1e100, '1e+100'],
    [5e-324, '5e-324'],
    [100, '100.0'],
  ];
  for (const [v, want] of cases) assert.equal(pythonFloatRepr(v), want, `repr(${v})`);
  assert.equal(pyJson({ a: new PyFloat(3), b: 3, c: [1, 'é'], d: null, e: true }), '{"a": 3.0, "b": 3, "c": [1, "\\u00e9"], "d": null, "e": true}');
});

test('TrainConfig defaults follow sparsify 1.3 except optimizer adam', () => {
  const c = trainConfig();
  assert.equal(c.optimizer, 'adam');
  assert.equal(c.batchSize, 32);
  assert.equal(c.deadFeatureThreshold, 10_000_000);
  assert.deepEqual(c.initSeeds, [0]);
  assert.equal(c.saveDir, 'checkpoints');
  assert.equal(c.sae.k, 32);
  assert.equal(c.sae.expansionFactor, 32);
  assert.equal(DEFAULT_TRAIN_CONFIG.lrWarmupSteps, 1000);
});

test('config.json matches the byte layout of sparsify save_json (fixture run)', () => {
  // The fixture run's settings (test/fixtures/train/gpt2_sae/config.json was written by Python sparsify).
  const c = trainConfig({
    sae: { expansionFactor: 8, k: 8 },
    batchSize: 8,
    optimizer: 'signum',
    auxkAlpha: 0.03125,
    deadFeatureThreshold: 1024,
    hookpoints: ['h.0', 'h.1'],
    saveEvery: 4,
    logToWandb: false,
    runName: 'gpt2_sae',
  });
  c.layers = [0, 1]; // resolved by the trainer after the hookpoints (as sparsify does)
  const want = readFileSync(new URL('../fixtures/train/gpt2_sae/config.json', import.meta.url), 'utf-8');
  assert.equal(trainConfigJson(c), want);
  // And it round-trips.
  const back = trainConfigFromDict(JSON.parse(want));
  assert.equal(trainConfigJson(back), want);
});

test('float fields print as Python floats', () => {
  const c = trainConfig({ lr: 1e-5, auxkAlpha: 2 });
  const s = trainConfigJson(c);
  assert.match(s, /"lr": 1e-05,/);
  assert.match(s, /"auxk_alpha": 2\.0,/);
  const r = runConfig({ model: 'm', dataset: 'd', hfToken: 'secret', lr: 0.0003 });
  const rs = trainConfigJson(r);
  assert.match(rs, /"lr": 0\.0003,/);
  assert.match(rs, /"hf_token": null/);
  assert.ok(!rs.includes('secret'));
  const keys = Object.keys(JSON.parse(rs));
  assert.deepEqual(keys.slice(0, 2), ['sae', 'batch_size']);
  assert.deepEqual(keys.slice(-13), ['model', 'dataset', 'split', 'ctx_len', 'hf_token', 'revision', 'load_in_8bit', 'max_examples', 'resume', 'text_column', 'shuffle_seed', 'data_preprocessing_num_proc', 'data_args']);
});

test('__post_init__ validations raise ConfigError', () => {
  assert.throws(() => trainConfig({ layers: [1], layerStride: 2 }), (e: Error) => e instanceof ConfigError && /layer_stride/.test(e.message));
  assert.throws(() => trainConfig({ initSeeds: [] }), (e: Error) => e instanceof ConfigError && /seed/.test(e.message));
  assert.throws(() => trainConfig({ distributeModules: true, lossFn: 'ce' }), ConfigError);
  assert.throws(() => trainConfig({ hookpoints: ['h.*'], layers: [0] }), ConfigError);
  assert.throws(() => trainConfig({ batchSize: 0 }), /batch_size/);
  assert.throws(() => trainConfig({ microAccSteps: 2, lossFn: 'kl' }), /micro_acc_steps/);
  // ce/kl are valid configs but not trainable here: one check, used by the Trainer and the CLI.
  assert.throws(() => assertSupportedLossFn(trainConfig({ lossFn: 'kl' })), (e: Error) => e instanceof ConfigError && /loss_fn "kl".*not implemented/.test(e.message));
  assert.doesNotThrow(() => assertSupportedLossFn(trainConfig({})));
  assert.throws(() => trainConfig({ optimizer: 'sgd' as never }), /optimizer/);
  assert.throws(() => trainConfig({ sae: { k: 0 } }), ConfigError);
  assert.throws(() => trainConfig({ lr: -1 }), /lr/);
  assert.throws(() => trainConfig({ initSeeds: [1, 1] }), /duplicates/);
  assert.throws(() => runConfig({ loadIn8bit: true }), /load_in_8bit/);
});

test('LR laws, warmup schedule, banker-rounded k schedule', () => {
  assert.ok(Math.abs(defaultLr('signum', 24576) - 4.0825e-3) < 1e-6);
  assert.ok(Math.abs(defaultLr('adam', 65536) - 1e-4) < 1e-12);
  assert.equal(coderLr(null, 'adam', 65536), defaultLr('adam', 65536));
  assert.equal(coderLr(0, 'adam', 65536), defaultLr('adam', 65536));
  assert.equal(coderLr(3e-4, 'adam', 65536), 3e-4);
  assert.equal(defaultLr('muon', 1), 2e-3);
  assert.equal(linearWarmupDecay(0, 10, 100), 0);
  assert.equal(linearWarmupDecay(5, 10, 100), 0.5);
  assert.equal(linearWarmupDecay(10, 10, 100), 1);
  assert.equal(linearWarmupDecay(55, 10, 100), 0.5);
  assert.equal(linearWarmupDecay(200, 10, 100), 0);
  assert.equal(linearWarmupDecay(0, 0, 4), 1);
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, 3.49].map(roundHalfEven), [0, 2, 2, 0, 3]);
  assert.equal(initialK(512, 64), 512);
  assert.equal(initialK(4096, 64), 640);
  // k decays per batch from 640 to 8 over 4 batches
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((s) => currentK(s, 4, 640, 8)), [640, 482, 324, 166, 8, 8]);
  // 0.5 cases round to even: initial 3, final 2 over 2 steps -> 2.5 -> 2
  assert.equal(currentK(1, 2, 3, 2), 2);
  assert.equal(currentK(1, 2, 5, 2), 4); // 3.5 -> 4
});

test('max_grad_norm / n_batches_for_norm_estimate: validated; a plain topk run keeps sparsify\'s config.json keys', async () => {
  const { defaultMaxGradNorm } = await import('@sparsify/train');
  assert.throws(() => trainConfig({ maxGradNorm: -1 }), (e: Error) => e instanceof ConfigError && /max_grad_norm must be >= 0/.test(e.message));
  assert.throws(() => trainConfig({ nBatchesForNormEstimate: 0 }), (e: Error) => e instanceof ConfigError && /n_batches_for_norm_estimate must be >= 1/.test(e.message));
  assert.throws(() => trainConfig({ maxGradNorm: Number.NaN }), /max_grad_norm must be a finite number or null/);
  assert.equal(defaultMaxGradNorm({ activation: 'topk', matryoshkaPrefixes: [] }), 0);
  assert.equal(defaultMaxGradNorm({ activation: 'groupmax', matryoshkaPrefixes: [] }), 0);
  assert.equal(defaultMaxGradNorm({ activation: 'topk', matryoshkaPrefixes: [8] }), 1);
  for (const a of ['relu', 'jumprelu', 'batchtopk'] as const) assert.equal(defaultMaxGradNorm({ activation: a, matryoshkaPrefixes: [] }), 1);
  const plain = JSON.parse(trainConfigJson(trainConfig({ maxGradNorm: 0 })));
  assert.ok(!('max_grad_norm' in plain) && !('n_batches_for_norm_estimate' in plain), 'sparsify keys only');
  const clipped = trainConfigJson(trainConfig({ maxGradNorm: 0.5 }));
  assert.match(clipped, /"max_grad_norm": 0\.5, "n_batches_for_norm_estimate": 1000/);
  assert.equal((trainConfigFromDict(JSON.parse(clipped)) as { maxGradNorm: number }).maxGradNorm, 0.5);
  assert.match(trainConfigJson(trainConfig({ maxGradNorm: 1, sae: { activation: 'relu' } })), /"max_grad_norm": 1\.0/);
});
