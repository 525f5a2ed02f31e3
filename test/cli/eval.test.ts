/**
 * `sparsify eval` and `sparsify train --eval_every/--eval_examples/--best_metric` end to end on
 * the embedded tiny model: the report layout, the CLI equal to the evaluate() API on the same
 * rows (dataset order), held-out evaluation in metrics.jsonl, eval.json and save_best by score.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { SparseCoder, loadModel, loadTokenizer } from '@sparsify/core';
import { main } from '@sparsify/cli';
import { DEFAULT_ASSETS_DIR, evaluate, openTokenDataset } from '@sparsify/train';

function capture() {
  const o = { out: '', err: '' };
  return { o, io: { stdout: { write: (s: string) => (o.out += s) }, stderr: { write: (s: string) => (o.err += s) } } };
}

process.env.SPARSIFY_CACHE ??= mkdtempSync(join(tmpdir(), 'spx-eval-cache-'));
const dir = mkdtempSync(join(tmpdir(), 'spx-eval-cli-'));
const run = join(dir, 'ev');
const corpus = join(DEFAULT_ASSETS_DIR, 'corpus.jsonl');

test('train --eval_every: eval/ records in metrics.jsonl, eval.json at the end, save_best by ce_loss_score', async () => {
  const c = capture();
  const args = ['train', '--max_examples', '40', '--batch_size', '4', '--save_dir', dir, '--run_name', 'ev', '-k', '8'];
  const code = await main([...args, '--eval_every', '3', '--eval_examples', '8', '--save_best', '--best_metric', 'ce_loss_score', '--save_every', '3'], c.io);
  assert.equal(code, 0, c.o.err);
  // 40 rows, 8 held out -> 32 training rows = 8 steps.
  assert.match(c.o.err, /32 sequences of 256 tokens, 8 steps/);
  const records = readFileSync(join(run, 'metrics.jsonl'), 'utf-8').trim().split('\n').map((l) => JSON.parse(l));
  const evals = records.filter((r) => 'eval/tokens' in r);
  assert.deepEqual(evals.map((r) => r.step), [3, 6]);
  for (const r of evals) {
    assert.equal(r['eval/tokens'], 8 * 256);
    for (const h of ['h.0', 'h.1']) for (const k of ['ce_loss_score', 'kl_div_spliced', 'fvu', 'l0']) assert.ok(Number.isFinite(r[`eval/${h}/${k}`]), `${h}/${k}`);
    assert.ok(Number.isFinite(r['eval/all/ce_loss_score']));
  }
  const final = JSON.parse(readFileSync(join(run, 'eval.json'), 'utf-8'));
  assert.equal(final.tokens, 8 * 256);
  assert.deepEqual(Object.keys(final.hookpoints), ['h.0', 'h.1']);
  assert.ok(final.hookpoints['h.0'].ce_loss_score > 0, 'trained coders beat zero ablation');
  for (const h of ['h.0', 'h.1']) assert.ok(existsSync(join(run, 'best', h, h, 'sae.safetensors')), `best/${h}`);
  const state = JSON.parse(readFileSync(join(run, 'best', 'h.0', 'trainer_state.json'), 'utf-8'));
  assert.ok(state.best_loss['h.0'] < 0, 'best by -ce_loss_score');
});

test('sparsify eval: table, --json report layout, equal to evaluate() on the same rows in order', async () => {
  const jsonPath = join(dir, 'report.json');
  const c = capture();
  const code = await main(['eval', run, DEFAULT_ASSETS_DIR, corpus, '--ctx_len', '64', '--max_examples', '6', '--batch_size', '4', '--json', jsonPath], c.io);
  assert.equal(code, 0, c.o.err);
  assert.match(c.o.out, /hookpoint\s+ce_spliced/);
  assert.match(c.o.out, /^all\s/m);
  const r = JSON.parse(readFileSync(jsonPath, 'utf-8'));
  for (const k of ['model', 'dataset', 'tokens', 'ctx_len', 'ce_loss_clean', 'hookpoints', 'all']) assert.ok(k in r, k);
  assert.equal(r.ctx_len, 64);
  assert.equal(r.tokens, 6 * 64);
  const fields = ['ce_loss_clean', 'ce_loss_spliced', 'ce_loss_zero_ablation', 'ce_loss_mean_ablation', 'ce_loss_score', 'delta_ce', 'kl_div_spliced',
    'kl_div_zero_ablation', 'kl_div_score', 'fvu', 'explained_variance', 'mse', 'cosine_similarity', 'l2_ratio', 'l0', 'dead_fraction', 'dense_fraction', 'firing_histogram'];
  for (const h of ['h.0', 'h.1']) for (const k of fields) assert.ok(k in r.hookpoints[h], `${h}.${k}`);
  for (const k of ['ce_loss_spliced', 'ce_loss_score', 'kl_div_spliced', 'delta_ce']) assert.ok(Number.isFinite(r.all[k]), `all.${k}`);

  const model = await loadModel(DEFAULT_ASSETS_DIR);
  const ds = await openTokenDataset(corpus, { tokenizer: await loadTokenizer(DEFAULT_ASSETS_DIR), ctxLen: 64, shuffleSeed: null, maxExamples: 6 });
  const coders = await SparseCoder.loadMany(run, { local: true });
  const api = await evaluate(model, coders, ds, { batchSize: 4 });
  for (const h of ['h.0', 'h.1'])
    for (const k of ['ce_loss_spliced', 'kl_div_spliced', 'fvu', 'l0'] as const) assert.equal(r.hookpoints[h][k], api.hookpoints[h][k], `${h}.${k}`);
  for (const c of coders.values()) c.dispose();
  model.dispose();
});

test('sparsify eval: usage errors exit 2, bad coders exit 1 with a message', async () => {
  const a = capture();
  assert.equal(await main(['eval', run, DEFAULT_ASSETS_DIR, corpus, '--lr', '0.1'], a.io), 2);
  assert.match(a.o.err, /--lr is a training flag/);
  const b = capture();
  assert.equal(await main(['eval', run], b.io), 2);
  assert.match(b.o.err, /expected <coders> <model>/);
  const c = capture();
  assert.equal(await main(['eval', run, DEFAULT_ASSETS_DIR, corpus, '--json'], c.io), 2);
  const d = capture();
  assert.equal(await main(['eval', join(dir, 'nothing-here'), DEFAULT_ASSETS_DIR, corpus], d.io), 1);
  assert.doesNotMatch(d.o.err, /at .*\.ts:\d+/, 'no stack trace');
  const e = capture();
  assert.equal(await main(['eval', run, DEFAULT_ASSETS_DIR, corpus, '--hookpoints', 'nomatch'], e.io), 2);
  assert.match(e.o.err, /no coder of .* matches --hookpoints nomatch/);
  const h = capture();
  assert.equal(await main(['eval', '--help'], h.io), 0);
  assert.match(h.o.out, /usage: sparsify eval/);
});
