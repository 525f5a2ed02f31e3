// `sparsify features` end to end: the default flow (train the embedded default, then features of
// the run folder with no other argument), the Neuronpedia export against the documented layout,
// explicit coder / model / text dataset arguments for a transcoder, and usage errors.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';

import { loadTokenizer } from '@sparsify/core';
import { main } from '@sparsify/cli';
import { readFeaturesIndex, type FeatureRecord } from '@sparsify/train';

import { MODEL_DIR, TRANSCODER_DIR } from './helpers.ts';
import { validateBatch, FEATURE_FIELDS } from './neuronpedia-schema.ts';
import { defaultFeaturesDir } from '../../packages/cli/src/commands/view.ts';

const tmp = mkdtempSync(join(tmpdir(), 'features-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function capture() {
  const o = { out: '', err: '' };
  return { o, io: { stdout: { write: (s: string) => (o.out += s) }, stderr: { write: (s: string) => (o.err += s) } } };
}

test('train, then features of the run folder with no other argument, then the Neuronpedia export', async () => {
  const c = capture();
  assert.equal(await main(['train', '--max_examples', '16', '--save_dir', join(tmp, 'checkpoints'), '--run_name', 'default'], c.io), 0, c.o.err);
  const run = join(tmp, 'checkpoints', 'default');
  const cwd = process.cwd();
  process.chdir(tmp);
  try {
    const f = capture();
    assert.equal(await main(['features', 'checkpoints/default', '--max_examples', '12', '--neuronpedia', 'np'], f.io), 0, f.o.err);
    assert.match(f.o.out, /wrote features\/default/);
    assert.equal(defaultFeaturesDir(tmp), join('features', 'default'), 'view finds it with no argument');
  } finally {
    process.chdir(cwd);
  }
  const out = join(tmp, 'features', 'default');
  const index = readFeaturesIndex(out);
  assert.equal(index.run, run);
  assert.equal(index.rows, 12);
  assert.equal(index.ctx_len, 256);
  assert.equal(index.positions, 12 * 256);
  assert.ok(index.tokens > 0 && index.tokens <= index.positions);
  assert.deepEqual(index.hookpoints.map((h) => h.name), ['h.0', 'h.1']);
  assert.ok(existsSync(join(out, 'tokenizer.json')));
  const sample = 'Copyright 2007, 12345 and  two spaces';
  assert.deepEqual((await loadTokenizer(out)).encode(sample), (await loadTokenizer(index.model_dir)).encode(sample), 'the copied tokenizer tokenizes as the model\'s');
  const vocab = JSON.parse(readFileSync(join(out, 'vocab.json'), 'utf-8'));
  assert.equal(vocab.length, index.vocab_size);
  const lines = readFileSync(join(out, 'h.0', 'features.jsonl'), 'utf-8').trim().split('\n');
  assert.equal(lines.length, 256);
  const rec = JSON.parse(lines[0]) as FeatureRecord;
  for (const k of ['index', 'frac_nonzero', 'max_act', 'mean_act', 'top', 'quantiles', 'histogram', 'logits']) assert.ok(k in rec, k);
  assert.equal(rec.logits.pos.length, 10, 'h.0 is residual width: logit effects present');
  assert.ok(!readdirSync(join(tmp, 'features')).some((n) => n.startsWith('.')), 'no building or scratch folder left');

  // The export: one batch file per 128 latents, each valid against the documented layout.
  const files = readdirSync(join(tmp, 'np', 'h.0')).sort();
  assert.deepEqual(files, ['batch-0.json', 'batch-1.json']);
  const batch = JSON.parse(readFileSync(join(tmp, 'np', 'h.0', 'batch-0.json'), 'utf-8'));
  assert.deepEqual(validateBatch(batch), []);
  assert.equal(batch.features.length, 128);
  assert.equal(batch.layer, 0);
  assert.equal(batch.sae_set, 'res-sparsify');
  assert.equal(batch.model_id, 'default');
  const live = batch.features.find((x: { activations: unknown[] }) => x.activations.length > 0);
  assert.ok(live, 'some latent has examples');
  assert.equal(live.n_tokens_in_prompt, 256);
  assert.equal(live.freq_hist_data_bar_heights.length, 50);
  assert.equal(live.pos_str.length, 10);
  // The validator catches what it should.
  const broken = structuredClone(batch);
  broken.features[0].extra = 1;
  delete broken.features[1].pos_str;
  const a = broken.features.find((x: { activations: unknown[] }) => x.activations.length > 0).activations[0];
  a.values = a.values.slice(1);
  const errs = validateBatch(broken);
  assert.ok(errs.some((e) => /unknown key extra/.test(e)) && errs.some((e) => /missing pos_str/.test(e)) && errs.some((e) => /tokens but/.test(e)), errs.join('\n'));
  assert.equal(Object.keys(batch.features[0]).length, Object.keys(FEATURE_FIELDS).length);

  // --out inside the run folder is refused (saves replace run folders).
  const inside = capture();
  assert.equal(await main(['features', run, '--out', join(run, 'features')], inside.io), 2);
  assert.match(inside.o.err, /inside the run folder/);
  // A second run replaces the output whole, and removes builds left by killed runs.
  const stale = join(tmp, 'features', '.default.building-999999999');
  mkdirSync(stale);
  const again = capture();
  assert.equal(await main(['features', run, '--max_examples', '4', '--out', out, '--top', '3'], again.io), 0, again.o.err);
  assert.equal(readFeaturesIndex(out).rows, 4);
  assert.ok(!existsSync(stale));
  assert.ok(JSON.parse(readFileSync(join(out, 'h.1', 'features.jsonl'), 'utf-8').split('\n')[0]).top.length <= 3);
});

test('a transcoder from explicit coder, model and text dataset arguments; the export names it tc', async () => {
  const coders = join(tmp, 'tc');
  mkdirSync(coders);
  // A coders folder (no run config.json): the model and dataset come from the arguments.
  const { cpSync } = await import('node:fs');
  cpSync(TRANSCODER_DIR, join(coders, 'h.0.mlp'), { recursive: true });
  const c = capture();
  const prev = process.env.SPARSIFY_CACHE;
  process.env.SPARSIFY_CACHE = join(tmp, 'cache');
  try {
    const code = await main(
      ['features', coders, MODEL_DIR, join(import.meta.dirname, '..', 'fixtures', 'data', 'corpus.jsonl'), '--ctx_len', '32', '--max_examples', '10', '--out', join(tmp, 'tc-out'), '--neuronpedia', join(tmp, 'tc-np'), '--window', '16'],
      c.io,
    );
    assert.equal(code, 0, c.o.err);
  } finally {
    if (prev === undefined) delete process.env.SPARSIFY_CACHE;
    else process.env.SPARSIFY_CACHE = prev;
  }
  const index = readFeaturesIndex(join(tmp, 'tc-out'));
  assert.equal(index.hookpoints[0].transcode, true);
  assert.equal(index.run, null);
  assert.equal(index.ctx_len, 32);
  const rec = JSON.parse(readFileSync(join(tmp, 'tc-out', 'h.0.mlp', 'features.jsonl'), 'utf-8').split('\n')[0]) as FeatureRecord;
  for (const e of rec.top) assert.equal(e.tokens.length, 16);
  const batch = JSON.parse(readFileSync(join(tmp, 'tc-np', 'h.0.mlp', 'batch-0.json'), 'utf-8'));
  assert.deepEqual(validateBatch(batch), []);
  assert.equal(batch.sae_set, 'tc-sparsify');
  assert.equal(batch.model_id, 'gpt2');
});

test('usage errors exit 2 with a message naming the problem', async () => {
  const cases: [string[], RegExp][] = [
    [['features'], /expected a run folder/],
    [['features', join(tmp, 'nope')], /no such folder/],
    [['features', TRANSCODER_DIR, '--top', '0'], /--top: expected an integer >= 1/],
    [['features', TRANSCODER_DIR, '--bogus'], /unknown flag --bogus/],
    [['features', TRANSCODER_DIR, '--window', '2000'], /--window: at most 1024/],
    [['features', TRANSCODER_DIR], /no model given/],
    [['view', '--port', 'x'], /--port: expected an integer/],
  ];
  for (const [argv, re] of cases) {
    const c = capture();
    const code = await main(argv, c.io);
    assert.ok(code === 2 || (code === 1 && /no such folder/.test(c.o.err)), `${argv.join(' ')}: exit ${code}: ${c.o.err}`);
    assert.match(c.o.err, re, argv.join(' '));
    assert.doesNotMatch(c.o.err, /\n\s+at /, 'no stack trace');
  }
  // --out naming a folder that is not a features output is refused, and left alone.
  const other = join(tmp, 'precious');
  mkdirSync(other);
  writeFileSync(join(other, 'keep.txt'), 'x');
  const c = capture();
  assert.equal(await main(['features', join(tmp, 'tc'), MODEL_DIR, join(import.meta.dirname, '..', 'fixtures', 'data', 'corpus.jsonl'), '--ctx_len', '32', '--out', other], c.io), 2);
  assert.match(c.o.err, /not a features output/);
  assert.deepEqual(readdirSync(other), ['keep.txt']);
});
