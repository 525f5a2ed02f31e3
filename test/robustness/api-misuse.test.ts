/**
 * The library API under misuse and faults: typed errors that name the problem, checked before
 * anything is allocated or crashes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ConfigError, DatasetError, DisposedError, FileFormatError, SparseCoder, Tensor, ValueError, loadModel, parseModelConfig } from '@sparsify/core';
import { DEFAULT_ASSETS_DIR, Trainer, trainConfig, openTokenDataset, InMemoryTokenDataset } from '@sparsify/train';

const tmp = () => mkdtempSync(join(tmpdir(), 'spx-api-'));

test('coder sizes are checked before allocating; k > latents is named', async () => {
  await assert.rejects(SparseCoder.create(1e6, { expansionFactor: 1e6 }), (e: Error) => e instanceof ValueError && /elements per weight matrix/.test(e.message));
  await assert.rejects(SparseCoder.create(4096, { numLatents: 2 ** 30 }), (e: Error) => e instanceof ValueError && /limit|memory/.test(e.message));
  const ok = await SparseCoder.create(8, { numLatents: 16, k: 4 });
  ok.dispose();
});

test('encode/forward arguments: null, disposed tensors and bad totalVariance are typed errors', async () => {
  const sae = await SparseCoder.create(8, { numLatents: 16, k: 4 });
  await assert.rejects(sae.encode(null as never), (e: Error) => e instanceof ValueError && /encode: x must be a Tensor, got null/.test(e.message));
  const x = Tensor.from(new Float32Array(16).fill(0.5), [2, 8]);
  for (const tv of [-1, 0, NaN]) await assert.rejects(sae.forward(x, { totalVariance: tv }), (e: Error) => e instanceof ValueError && /totalVariance must be a finite number > 0/.test(e.message));
  const out = await sae.forward(x, { totalVariance: 2 });
  assert.ok(Number.isFinite(out.fvu));
  x.dispose();
  assert.throws(() => x.shape, DisposedError);
  assert.throws(() => x.dtype, DisposedError);
  await assert.rejects(sae.encode(x), DisposedError);
  sae.dispose();
});

test('model config and forward arguments: zero heads, a hookpoint string; a truncated weights file fails cleanly', async () => {
  const cfg = JSON.parse(readFileSync(join(DEFAULT_ASSETS_DIR, 'config.json'), 'utf-8'));
  assert.throws(() => parseModelConfig({ ...cfg, n_head: 0 }), (e: Error) => e instanceof ConfigError && /'n_head' \(number of heads\) must be >= 1, got 0/.test(e.message));
  const dir = tmp();
  const model = join(dir, 'm');
  cpSync(DEFAULT_ASSETS_DIR, model, { recursive: true });
  const m = await loadModel(model);
  const tokens = Tensor.from(new Int32Array(8), [1, 8]);
  await assert.rejects(m.forward(tokens, { hookpoints: 'h.1' as never }), (e: Error) => e instanceof ValueError && /hookpoints must be an array of module names.*use \["h\.1"\]/.test(e.message));
  (await m.forward(tokens, { hookpoints: ['h.1'] })).captured.get('h.1')!.dispose();
  // Another process truncates the mapped file: the next forward must not touch the mapping.
  truncateSync(join(model, 'model.safetensors'), 4096);
  await assert.rejects(m.forward(tokens, { hookpoints: ['h.1'] }), (e: Error) => e instanceof FileFormatError && /model\.safetensors: the weights file changed size/.test(e.message));
  m.dispose();
  tokens.dispose();
});

test('trainer: a dataset with a NaN length, NaN activations name the hookpoint and model, hookpoints as a string', async () => {
  const m = await loadModel(DEFAULT_ASSETS_DIR);
  const rows = () => new Int32Array(0);
  assert.throws(() => new Trainer(trainConfig({ batchSize: 1 }), { length: NaN, ctxLen: 8, rows }, m, { save: false }), /dataset.length must be a non-negative integer, got NaN/);
  // A batch whose activations cannot fit is refused before any row is read.
  const huge = new Trainer(trainConfig({ batchSize: 1_000_000 }), { length: 10_000_000, ctxLen: 2000, rows }, m, { save: false });
  await assert.rejects(huge.init(), (e: Error) => e instanceof ConfigError && /--batch_size 1000000 x --ctx_len 2000: one batch's activations need/.test(e.message));
  assert.throws(() => trainConfig({ hookpoints: 'h.1' as never }), (e: Error) => e instanceof ConfigError && /hookpoints must be a list of strings/.test(e.message));

  // A model whose weights hold NaN.
  const dir = tmp();
  const bad = join(dir, 'nan-model');
  cpSync(DEFAULT_ASSETS_DIR, bad, { recursive: true });
  const file = join(bad, 'model.safetensors');
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString());
  const [b, e] = header['transformer.h.0.ln_1.weight'].data_offsets;
  for (let i = 8 + n + b; i < 8 + n + e; i += 4) buf.writeFloatLE(NaN, i);
  writeFileSync(file, buf);
  const nm = await loadModel(bad);
  const ds = new InMemoryTokenDataset(new Int32Array(4 * 16).fill(3), 16);
  const t = new Trainer(trainConfig({ batchSize: 2, hookpoints: ['h.0'], sae: { numLatents: 32, k: 4 } }), ds, nm, { save: false });
  await assert.rejects(t.fit(), (err: Error) => /hookpoint 'h\.0' of .*nan-model: .*NaN/.test(err.message));
  m.dispose();
  nm.dispose();
});

test('datasets: a corrupt Parquet file and a corrupt token cache name their file', async () => {
  const dir = tmp();
  const pq = join(dir, 'broken.parquet');
  writeFileSync(pq, Buffer.concat([Buffer.from('PAR1'), Buffer.alloc(64, 7), Buffer.from([8, 0, 0, 0]), Buffer.from('PAR1')]));
  const { loadTokenizer } = await import('@sparsify/core');
  const tokenizer = await loadTokenizer(DEFAULT_ASSETS_DIR);
  await assert.rejects(openTokenDataset(pq, { tokenizer, ctxLen: 8, cacheDir: join(dir, 'cache') }), (e: Error) => e instanceof DatasetError && e.message.includes(pq) && !/Cannot read properties/.test(e.message));

  // A damaged cache entry is rebuilt rather than trusted.
  const data = join(dir, 'c.jsonl');
  writeFileSync(data, '{"text":"hello world, hello tokens"}\n'.repeat(40));
  const cache = join(dir, 'cache');
  const ds1 = await openTokenDataset(data, { tokenizer, ctxLen: 8, cacheDir: cache });
  const first = ds1.rows([0]);
  const { readdirSync } = await import('node:fs');
  const meta = readdirSync(cache).find((f) => f.endsWith('.json'))!;
  writeFileSync(join(cache, meta), JSON.stringify({ version: 1, rows: 'x', ctxLen: -1, dtype: 'uint16', maxId: 1 }));
  const ds2 = await openTokenDataset(data, { tokenizer, ctxLen: 8, cacheDir: cache });
  assert.deepEqual([...ds2.rows([0])], [...first]);
  assert.equal(ds2.length, ds1.length);
  mkdirSync(join(dir, 'unused'));
  copyFileSync(data, join(dir, 'unused', 'x.jsonl'));
});
