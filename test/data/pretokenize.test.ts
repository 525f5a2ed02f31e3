// sparsify pretokenize: the embedded corpus tokenized once into an HF save_to_disk folder whose
// input_ids rows equal what train's own tokenization gives; train reads the folder; the
// SAELens-side files are present; usage errors exit 2 and DST is never replaced.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { loadTokenizer } from '@sparsify/core';
import { main } from '@sparsify/cli';
import { DEFAULT_ASSETS_DIR, openTokenDataset } from '@sparsify/train';

function capture() {
  const o = { out: '', err: '' };
  return { o, io: { stdout: { write: (s: string) => (o.out += s) }, stderr: { write: (s: string) => (o.err += s) } } };
}

test('pretokenize writes rows equal to train tokenization; train and openTokenDataset read the folder', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spx-pretok-'));
  try {
    const corpus = join(DEFAULT_ASSETS_DIR, 'corpus.jsonl');
    const out = join(dir, 'tok');
    const c = capture();
    assert.equal(await main(['pretokenize', corpus, '--out', out, '--ctx_len', '64', '--max_examples', '300'], c.io), 0, c.o.err);
    assert.match(c.o.out, /^300 rows of 64 tokens/);
    assert.deepEqual(readdirSync(out).sort(), ['data-00000-of-00001.arrow', 'dataset_info.json', 'sae_lens.json', 'state.json']);
    const sl = JSON.parse(readFileSync(join(out, 'sae_lens.json'), 'utf-8'));
    assert.equal(sl.context_size, 64);
    assert.equal(JSON.parse(readFileSync(join(out, 'dataset_info.json'), 'utf-8')).features.input_ids._type, 'Sequence');

    const tokenizer = await loadTokenizer(DEFAULT_ASSETS_DIR);
    const cacheDir = join(dir, 'cache');
    const direct = await openTokenDataset(corpus, { tokenizer, ctxLen: 64, shuffleSeed: null, maxExamples: 300, cacheDir });
    const fromFolder = await openTokenDataset(out, { ctxLen: 64, shuffleSeed: null, cacheDir });
    assert.equal(fromFolder.length, 300);
    const all = Array.from({ length: 300 }, (_, i) => i);
    assert.deepEqual(fromFolder.rows(all), direct.rows(all));

    const t = capture();
    const code = await main(['train', DEFAULT_ASSETS_DIR, out, '--ctx_len', '64', '--max_examples', '16', '--batch_size', '8', '--save_dir', join(dir, 'ck'), '--run_name', 'r', '-k', '8', '--expansion_factor', '2'], t.io);
    assert.equal(code, 0, t.o.err);
    assert.ok(existsSync(join(dir, 'ck', 'r', 'h.0', 'sae.safetensors')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pretokenize usage errors exit 2; an existing --out is refused and left alone', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spx-pretok-bad-'));
  try {
    mkdirSync(join(dir, 'exists'));
    const corpus = join(DEFAULT_ASSETS_DIR, 'corpus.jsonl');
    const cases: [string[], RegExp][] = [
      [['pretokenize', corpus], /--out DIR is required/],
      [['pretokenize', corpus, '--out', join(dir, 'exists')], /already exists/],
      [['pretokenize', corpus, '--out', join(dir, 'x'), '--ctx_len', '0'], /--ctx_len must be an integer >= 1/],
      [['pretokenize', corpus, '--out', join(dir, 'x'), '--bogus', '1'], /unknown flag --bogus/],
    ];
    for (const [argv, msg] of cases) {
      const c = capture();
      assert.equal(await main(argv, c.io), 2, argv.join(' '));
      assert.match(c.o.err, msg);
    }
    assert.deepEqual(readdirSync(dir), ['exists']);
    assert.deepEqual(readdirSync(join(dir, 'exists')), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
