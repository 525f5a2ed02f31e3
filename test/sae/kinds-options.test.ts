// SAELens's BatchTopK float k and relu's lp_norm as coder settings: cfg.json bytes (integers stay
// integers, lp_norm only when it is not 1), the typed errors, floor(k·rows) = 0 refused before a
// step, and the SAELens folders both ways (a standard training checkpoint's lp_norm; our export).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { coderConfigFromJson, coderConfigJson, ConfigError, mulberry32, SparseCoder, sparseCoderConfig, Tensor, ValueError } from '@sparsify/core';

const FIX = join(import.meta.dirname, '..', 'fixtures', 'saelens');
const D = 8, M = 32;

function gauss(rng: () => number, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
  return out;
}

test('cfg.json: a float batchtopk k is written as a float and read back; integer k and lp_norm 1 keep the old bytes', () => {
  const f = sparseCoderConfig({ activation: 'batchtopk', k: 16.5, numLatents: M });
  const text = coderConfigJson(f, D);
  assert.match(text, /"k": 16\.5, /);
  const back = coderConfigFromJson(JSON.parse(text));
  assert.equal(back.cfg.k, 16.5);
  assert.deepEqual(back.cfg, f);
  // An integer k stays an integer (sparsify's TopK and the batchtopk files written before float k).
  assert.match(coderConfigJson(sparseCoderConfig({ activation: 'batchtopk', k: 16, numLatents: M }), D), /"k": 16, /);
  const topk = coderConfigJson(sparseCoderConfig({ k: 16 }), D);
  assert.equal(topk, '{"activation": "topk", "expansion_factor": 32, "normalize_decoder": true, "num_latents": 0, "k": 16, "multi_topk": false, "skip_connection": false, "transcode": false, "d_in": 8}');
  // lp_norm: only when it is not 1, as a Python float.
  const relu1 = coderConfigJson(sparseCoderConfig({ activation: 'relu', numLatents: M }), D);
  assert.ok(!relu1.includes('lp_norm'), relu1);
  const relu2 = coderConfigJson(sparseCoderConfig({ activation: 'relu', numLatents: M, lpNorm: 2 }), D);
  assert.match(relu2, /"lp_norm": 2\.0, "d_in": 8}$/);
  assert.equal(coderConfigFromJson(JSON.parse(relu2)).cfg.lpNorm, 2);
  assert.equal(coderConfigFromJson(JSON.parse(relu1)).cfg.lpNorm, 1);
});

test('float k and lp_norm: typed errors naming the field', () => {
  for (const activation of ['topk', 'groupmax'] as const)
    assert.throws(() => sparseCoderConfig({ activation, k: 16.5 }), (e: Error) => e instanceof ConfigError && /k must be an integer >= 1, got 16.5/.test(e.message));
  for (const k of [0, -1, Infinity, Number.NaN])
    assert.throws(() => sparseCoderConfig({ activation: 'batchtopk', k }), (e: Error) => e instanceof ConfigError && /k must be a finite number > 0 for activation "batchtopk"/.test(e.message));
  for (const lpNorm of [0.5, 0, -2, Infinity, Number.NaN])
    assert.throws(() => sparseCoderConfig({ activation: 'relu', lpNorm }), (e: Error) => e instanceof ConfigError && /lp_norm must be a finite number >= 1/.test(e.message));
  assert.throws(() => sparseCoderConfig({ activation: 'jumprelu', lpNorm: 2 }), (e: Error) => e instanceof ConfigError && /lp_norm 2 applies to activation "relu" only/.test(e.message));
  assert.throws(() => coderConfigFromJson({ activation: 'relu', lp_norm: 0.5, d_in: 4 }), /cfg\.json: lp_norm must be/);
});

test('batchtopk: floor(k · rows) = 0 is refused before the step (no gradient added)', async () => {
  const rng = mulberry32(4);
  const coder = await SparseCoder.create(D, { activation: 'batchtopk', numLatents: M, k: 0.1 });
  const x = Tensor.from(gauss(rng, 5 * D), [5, D]);
  await assert.rejects(coder.forwardBackward(x, { auxkAlpha: 0 }), (e: Error) => e instanceof ValueError && /floor\(k · rows\) = floor\(0\.1 · 5\) = 0/.test(e.message));
  for (const [name, g] of coder.grads()) assert.ok(g.toFloat32Array().every((v) => v === 0), `${name} untouched`);
  // Ten rows keep one latent.
  const x10 = Tensor.from(gauss(rng, 10 * D), [10, D]);
  const L = await coder.forwardBackward(x10, { auxkAlpha: 0 });
  assert.ok(L.loss > 0 && Number.isFinite(L.loss));
  coder.dispose();
});

test('relu lp_norm: a SAELens standard training checkpoint keeps its lp_norm; our SAELens export reads back with it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kinds-options-'));
  try {
    // The standard fixture with the training keys SAELens's save_model writes (standard_sae.py: l1_coefficient, lp_norm, l1_warm_up_steps).
    const ck = join(dir, 'checkpoint');
    mkdirSync(ck);
    copyFileSync(join(FIX, 'standard', 'sae_weights.safetensors'), join(ck, 'sae_weights.safetensors'));
    const cfg = JSON.parse(readFileSync(join(FIX, 'standard', 'cfg.json'), 'utf8'));
    writeFileSync(join(ck, 'cfg.json'), JSON.stringify({ ...cfg, l1_coefficient: 5.0, lp_norm: 1.5, l1_warm_up_steps: 0, decoder_init_norm: 0.1 }));
    const coder = await SparseCoder.loadFromDisk(ck);
    assert.equal(coder.cfg.activation, 'relu');
    assert.equal(coder.cfg.lpNorm, 1.5);
    writeFileSync(join(ck, 'cfg.json'), JSON.stringify({ ...cfg, lp_norm: 0.5 }));
    await assert.rejects(SparseCoder.loadFromDisk(ck), (e: Error) => e instanceof ConfigError && /lp_norm must be a finite number >= 1/.test(e.message));

    await coder.saveToDisk(join(dir, 'ours'));
    assert.match(readFileSync(join(dir, 'ours', 'cfg.json'), 'utf8'), /"lp_norm": 1\.5/);
    assert.equal((await SparseCoder.loadFromDisk(join(dir, 'ours'))).cfg.lpNorm, 1.5);
    await coder.saveToDisk(join(dir, 'saelens'), { format: 'saelens' });
    const again = await SparseCoder.loadFromDisk(join(dir, 'saelens'));
    assert.deepEqual(again.cfg, coder.cfg);
    again.dispose();
    coder.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a SAELens batchtopk checkpoint with a float k exports as the JumpReLU SAELens infers with, and imports back as batchtopk', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kinds-options-bt-'));
  try {
    const coder = await SparseCoder.loadFromDisk(join(FIX, 'batchtopk'));
    assert.deepEqual([coder.cfg.activation, coder.cfg.k], ['batchtopk', 6.5]);
    await coder.saveToDisk(join(dir, 'saelens'), { format: 'saelens' });
    const sl = JSON.parse(readFileSync(join(dir, 'saelens', 'cfg.json'), 'utf8'));
    assert.equal(sl.architecture, 'jumprelu');
    assert.ok(!('k' in sl), 'the inference folder has no k, as SAELens');
    const back = await SparseCoder.loadFromDisk(join(dir, 'saelens'));
    assert.deepEqual([back.cfg.activation, back.cfg.k, back.topkThreshold], ['batchtopk', 6.5, coder.topkThreshold]);
    back.dispose();
    coder.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a SAELens matryoshka_batchtopk checkpoint with a float k imports with its widths and topk_threshold_lr', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kinds-options-mt-'));
  try {
    // The batchtopk checkpoint as SAELens's MatryoshkaBatchTopKTrainingSAE saves it: the same tensors,
    // architecture matryoshka_batchtopk with matryoshka_widths (matryoshka_batchtopk_sae.py).
    copyFileSync(join(FIX, 'batchtopk', 'sae_weights.safetensors'), join(dir, 'sae_weights.safetensors'));
    const cfg = JSON.parse(readFileSync(join(FIX, 'batchtopk', 'cfg.json'), 'utf8'));
    writeFileSync(join(dir, 'cfg.json'), JSON.stringify({ ...cfg, k: 5.25, topk_threshold_lr: 0.05, matryoshka_widths: [16, 48, 64], architecture: 'matryoshka_batchtopk' }));
    const coder = await SparseCoder.loadFromDisk(dir);
    assert.deepEqual([coder.cfg.activation, coder.cfg.k, coder.cfg.topkThresholdLr, coder.cfg.matryoshkaPrefixes], ['batchtopk', 5.25, 0.05, [16, 48, 64]]);
    const x = Tensor.from(gauss(mulberry32(9), 12 * 16), [12, 16]);
    const L = await coder.forwardBackward(x, { auxkAlpha: 0 });
    assert.ok(L.multiTopkFvu > 0, 'the prefix losses train');
    coder.dispose();
    writeFileSync(join(dir, 'cfg.json'), JSON.stringify({ ...cfg, topk_threshold_lr: 2 }));
    await assert.rejects(SparseCoder.loadFromDisk(dir), (e: Error) => e instanceof ConfigError && /topk_threshold_lr must be a number in \[0, 1\]/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
