import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { loadTokenizer, FileFormatError, UNBOUNDED_MODEL_MAX_LENGTH, tokenizerFromJson } from '@sparsify/core';

const FIX = join(import.meta.dirname, '..', 'fixtures', 'data');
const goldens = JSON.parse(readFileSync(join(FIX, 'tokenizer_goldens.json'), 'utf-8'));
const corpus = readFileSync(join(FIX, 'corpus.jsonl'), 'utf-8').trim().split('\n').map((l) => JSON.parse(l) as { name: string; text: string });

test('fixture tokenizer: config special tokens, model_max_length, vocab size', async () => {
  const tok = await loadTokenizer(FIX);
  assert.equal(tok.eosToken, '<|endoftext|>');
  assert.equal(tok.eosTokenId, 0);
  assert.equal(tok.bosTokenId, 0);
  assert.equal(tok.modelMaxLength, 512);
  assert.equal(tok.vocabSize, 1024);
  assert.deepEqual(tok.specialPrefix, []);
  assert.deepEqual(tok.specialSuffix, []);
});

test('ids match the golden model inputs (EOS+Apache-2.0 head, GPL-3 tokens 100..115)', async () => {
  const tok = await loadTokenizer(FIX);
  const golden = JSON.parse(readFileSync(join(FIX, 'golden_input_ids.json'), 'utf-8')).input_ids as number[][];
  const apache = corpus.find((d) => d.name === 'Apache-2.0')!.text;
  const gpl3 = corpus.find((d) => d.name === 'GPL-3')!.text;
  assert.deepEqual(tok.encode('<|endoftext|>' + apache).slice(0, 16), golden[0]);
  assert.deepEqual(tok.encode(gpl3).slice(100, 116), golden[1]);
});

for (const [name, dir] of [['gpt2_style', FIX], ['llama_style', join(FIX, 'llama_tok')]] as const) {
  test(`${name}: encode matches the Python tokenizers library, decode round-trips`, async () => {
    const tok = await loadTokenizer(dir);
    goldens.samples.forEach((s: string, i: number) => {
      const g = goldens[name].encode[i];
      assert.deepEqual(tok.encode(s), g.with_special, `with special tokens: ${JSON.stringify(s)}`);
      assert.deepEqual(tok.encode(s, { addSpecialTokens: false }), g.plain, `plain: ${JSON.stringify(s)}`);
    });
    const text = corpus[3].text.slice(0, 500);
    assert.equal(tok.decode(tok.encode(text, { addSpecialTokens: false })).trim(), text.trim());
  });
}

test('llama-style tokenizer: BOS from the config and as post-processor prefix', async () => {
  const tok = await loadTokenizer(join(FIX, 'llama_tok'));
  assert.equal(tok.bosToken, '<s>');
  assert.equal(tok.bosTokenId, 1);
  assert.equal(tok.eosTokenId, 2);
  assert.equal(tok.modelMaxLength, 48);
  assert.deepEqual(tok.specialPrefix, [1]);
  assert.deepEqual(tok.specialSuffix, []);
});

test('no model_max_length means unbounded; fingerprint follows the files', async () => {
  const json = JSON.parse(readFileSync(join(FIX, 'tokenizer.json'), 'utf-8'));
  const a = tokenizerFromJson(json, {});
  assert.equal(a.modelMaxLength, UNBOUNDED_MODEL_MAX_LENGTH);
  assert.equal(a.eosTokenId, undefined);
  const b = tokenizerFromJson(json, { model_max_length: 1e30, eos_token: { content: '<|endoftext|>' } });
  assert.equal(b.modelMaxLength, UNBOUNDED_MODEL_MAX_LENGTH);
  assert.equal(b.eosTokenId, 0);
  assert.notEqual(a.fingerprint, b.fingerprint);
});

test('special tokens fall back to special_tokens_map.json', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sparsify-tok-'));
  try {
    copyFileSync(join(FIX, 'tokenizer.json'), join(dir, 'tokenizer.json'));
    writeFileSync(join(dir, 'special_tokens_map.json'), JSON.stringify({ eos_token: { content: '<|endoftext|>', special: true } }));
    const tok = await loadTokenizer(dir);
    assert.equal(tok.eosToken, '<|endoftext|>');
    assert.equal(tok.eosTokenId, 0);
    assert.equal(tok.bosToken, undefined);
    writeFileSync(join(dir, 'tokenizer_config.json'), '{broken');
    await assert.rejects(loadTokenizer(dir), (e: Error) => e instanceof FileFormatError && /tokenizer_config\.json is not valid JSON/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('missing or broken tokenizer files give FileFormatError naming the file', async () => {
  await assert.rejects(loadTokenizer(join(FIX, 'nope')), (e: Error) => e instanceof FileFormatError && /tokenizer\.json/.test(e.message));
  await assert.rejects(loadTokenizer(join(FIX, 'parquet')), FileFormatError);
});

// transformers' AutoTokenizer with add_bos_token / add_eos_token / tokenizer_class changed in
// tokenizer_config.json next to a tokenizer.json (scripts/make-tokenizer-flag-fixtures.py): the
// post-processor of tokenizer.json decides the special tokens; the two flags change nothing.
test('tokenizer_config add_bos_token / add_eos_token: the ids of transformers\' AutoTokenizer', async () => {
  const flags = JSON.parse(readFileSync(join(FIX, 'tokenizer_flags.json'), 'utf-8'));
  const tokenizerJson = JSON.parse(readFileSync(join(FIX, 'llama_tok', 'tokenizer.json'), 'utf-8'));
  const config = JSON.parse(readFileSync(join(FIX, 'llama_tok', 'tokenizer_config.json'), 'utf-8'));
  const names = Object.keys(flags.variants);
  assert.ok(names.length >= 6);
  let withBos = 0;
  for (const name of names) {
    const v = flags.variants[name];
    const tok = tokenizerFromJson(v.post_processor ? tokenizerJson : { ...tokenizerJson, post_processor: null }, { ...config, ...v.config }, name);
    flags.texts.forEach((t: string, i: number) => assert.deepEqual(tok.encode(t), v.ids[i], `${name} (${v.class}): ${JSON.stringify(t)}`));
    if (v.ids[0][0] === tok.bosTokenId) withBos++;
  }
  // Both outcomes occur among the variants (BOS from a post-processor, none without one).
  assert.ok(withBos > 0 && withBos < names.length, `${withBos} of ${names.length} variants start with BOS`);
});
