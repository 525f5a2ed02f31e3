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

// The Python tokenizers library runs the file alone (Tokenizer.from_file): so does tokenizerFromJson.
// (loadTokenizer runs it as AutoTokenizer does; for llama_tok's LlamaTokenizerFast that is another
// pre-tokenizer: the test below.)
const fileTokenizer = (dir: string) =>
  tokenizerFromJson(JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf-8')), JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf-8')));
for (const [name, dir] of [['gpt2_style', FIX], ['llama_style', join(FIX, 'llama_tok')]] as const) {
  test(`${name}: encode matches the Python tokenizers library, decode round-trips`, async () => {
    const tok = fileTokenizer(dir);
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

// transformers' AutoTokenizer on folders whose tokenizer.json, tokenizer_config.json and config.json
// disagree (scripts/make-autotokenizer-fixtures.py): add_bos_token / add_eos_token (dropped), the
// class it picks from tokenizer_class and model_type, the pipeline that class rebuilds, its default
// special tokens. loadTokenizer must give the same ids, BOS / EOS ids and size.
test("loadTokenizer gives the ids of transformers' AutoTokenizer (class, pipeline, flags, special tokens)", async () => {
  const fx = JSON.parse(readFileSync(join(FIX, 'autotokenizer.json'), 'utf-8'));
  const bases: Record<string, string> = { gpt2_style: FIX, llama_style: join(FIX, 'llama_tok') };
  const classes = new Set<string>();
  for (const [name, v] of Object.entries<any>(fx.variants)) {
    const dir = mkdtempSync(join(tmpdir(), 'spx-autotok-'));
    try {
      const tokenizerJson = JSON.parse(readFileSync(join(bases[v.base], 'tokenizer.json'), 'utf-8'));
      const config = JSON.parse(readFileSync(join(bases[v.base], 'tokenizer_config.json'), 'utf-8'));
      for (const [k, x] of Object.entries(v.tokenizer_config)) if (x === null) delete config[k]; else config[k] = x;
      if (!v.post_processor) tokenizerJson.post_processor = null;
      writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson));
      writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
      if (v.model_type) writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: v.model_type }));
      const tok = await loadTokenizer(dir);
      const what = `${name} (${v.class})`;
      fx.texts.forEach((t: string, i: number) => assert.deepEqual(tok.encode(t), v.ids[i], `${what}: ${JSON.stringify(t)}`));
      assert.equal(tok.bosTokenId ?? null, v.bos_token_id, `${what}: bos`);
      assert.equal(tok.eosTokenId ?? null, v.eos_token_id, `${what}: eos`);
      assert.equal(tok.vocabSize, v.size, `${what}: size`);
      classes.add(v.class);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  for (const c of ['TokenizersBackend', 'GPT2Tokenizer', 'GPTNeoXTokenizer', 'LlamaTokenizer', 'GemmaTokenizer', 'Qwen2Tokenizer']) assert.ok(classes.has(c), `a variant of ${c}`);
});

test('a tokenizer\'s source files reload to the same tokenizer without the model\'s config.json', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spx-autotok-'));
  const copy = mkdtempSync(join(tmpdir(), 'spx-autotok-'));
  try {
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(FIX, f), join(dir, f));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'qwen2' }));
    const tok = await loadTokenizer(dir);
    writeFileSync(join(copy, 'tokenizer.json'), JSON.stringify(tok.source!.tokenizerJson));
    writeFileSync(join(copy, 'tokenizer_config.json'), JSON.stringify(tok.source!.config));
    const again = await loadTokenizer(copy);
    const text = corpus[0].text.slice(0, 2000);
    assert.deepEqual(again.encode(text), tok.encode(text));
    assert.equal(again.fingerprint, tok.fingerprint);
    assert.notDeepEqual(tokenizerFromJson(JSON.parse(readFileSync(join(FIX, 'tokenizer.json'), 'utf-8'))).encode(text), tok.encode(text), 'qwen2 tokenizes this text unlike the file alone');
  } finally {
    for (const d of [dir, copy]) rmSync(d, { recursive: true, force: true });
  }
});

test('a 300k-token vocabulary under a class whose special tokens are missing gets them at the next ids', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spx-autotok-'));
  try {
    const vocab: Record<string, number> = {};
    for (let i = 0; i < 300_000; i++) vocab[i < 256 ? String.fromCodePoint(0x100 + i) : `t${i}`] = i;
    vocab['<unk>'] = 300_000;
    const tokenizerJson = { version: '1.0', added_tokens: [], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, model: { type: 'BPE', vocab, merges: [] } };
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson));
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ tokenizer_class: 'GemmaTokenizerFast' }));
    const tok = await loadTokenizer(dir);
    // GemmaTokenizer's defaults: <unk> is in the vocabulary; <bos>, <eos>, <pad>, <mask> are new.
    assert.equal(tok.tokenToId('<unk>'), 300_000);
    assert.equal(tok.bosTokenId, 300_001);
    assert.equal(tok.eosTokenId, 300_002);
    assert.equal(tok.vocabSize, 300_005);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
