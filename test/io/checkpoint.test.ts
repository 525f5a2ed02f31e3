import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import {
  ConfigError,
  FileFormatError,
  coderConfigFromJson,
  coderConfigJson,
  listCoderDirs,
  loadSafetensors,
  readCoderDir,
  readSafetensorsRaw,
  saveSafetensors,
  sparseCoderConfig,
  writeCoderDir,
  DEFAULT_SPARSE_CODER_CONFIG,
} from '@sparsify/core';

import { FIXTURES, tempDir } from './helpers.js';

const SPARSIFY = join(FIXTURES, 'sparsify');

test('every sparsify-written cfg.json is re-written byte for byte', () => {
  const files = readdirSync(join(FIXTURES, 'cfg')).map((f) => join(FIXTURES, 'cfg', f));
  files.push(join(SPARSIFY, 'gpt2_sae', 'h.0', 'cfg.json'), join(FIXTURES, 'coders', 'f16_transcoder_skip', 'cfg.json'));
  assert.ok(files.length >= 10);
  for (const f of files) {
    const text = readFileSync(f, 'utf-8');
    const { cfg, dIn } = coderConfigFromJson(JSON.parse(text), f);
    assert.equal(coderConfigJson(cfg, dIn), text, f);
  }
});

test('historical cfg.json variants read with defaults; signed:true is rejected', () => {
  const june2024 = '{"expansion_factor": 32, "normalize_decoder": true, "k": 192, "signed": false, "d_in": 4096}';
  assert.equal(Buffer.byteLength(june2024), 92);
  const a = coderConfigFromJson(JSON.parse(june2024));
  assert.equal(a.dIn, 4096);
  assert.deepEqual(a.cfg, { ...DEFAULT_SPARSE_CODER_CONFIG, expansionFactor: 32, k: 192 });
  // Jul 2024 (+num_latents), Aug 2024 (+multi_topk, -signed), Nov 2024 (+skip_connection), Feb 2025 (+activation, transcode).
  const variants: [object, Partial<typeof DEFAULT_SPARSE_CODER_CONFIG>][] = [
    [{ expansion_factor: 16, normalize_decoder: false, num_latents: 1000, k: 64, signed: false, d_in: 512 }, { expansionFactor: 16, normalizeDecoder: false, numLatents: 1000, k: 64 }],
    [{ expansion_factor: 32, normalize_decoder: true, num_latents: 0, k: 32, multi_topk: true, d_in: 768 }, { multiTopk: true }],
    [{ expansion_factor: 8, normalize_decoder: true, num_latents: 0, k: 16, multi_topk: false, skip_connection: true, d_in: 64 }, { expansionFactor: 8, k: 16, skipConnection: true }],
    [{ activation: 'groupmax', expansion_factor: 4, normalize_decoder: true, num_latents: 0, k: 8, multi_topk: false, skip_connection: false, transcode: true, d_in: 64 }, { activation: 'groupmax', expansionFactor: 4, k: 8, transcode: true }],
    [{ k: 4, d_in: 8, embed_skip: true, some_future_key: [1, 2], nested: { a: 1 } }, { k: 4 }],
  ];
  for (const [obj, want] of variants) {
    const r = coderConfigFromJson(obj);
    assert.deepEqual(r.cfg, { ...DEFAULT_SPARSE_CODER_CONFIG, ...want }, JSON.stringify(obj));
  }
  assert.throws(() => coderConfigFromJson({ ...JSON.parse(june2024), signed: true }, 'x/cfg.json'), (e: Error) => e instanceof ConfigError && /x\/cfg\.json.*signed/.test(e.message));
  for (const bad of [{ k: 4 }, { d_in: 0, k: 4 }, { d_in: 8, k: 0 }, { d_in: 8, activation: 'softmax' }, { d_in: 8, multi_topk: 'yes' }, { d_in: 8, num_latents: -1 }, { d_in: 1e300, k: 4 }, { d_in: 8, expansion_factor: 2 ** 60 }, [1], null])
    assert.throws(() => coderConfigFromJson(bad, 'c.json'), (e: Error) => e instanceof ConfigError && e.message.startsWith('c.json'), JSON.stringify(bad));
});

test('readCoderDir reads F32, BF16 and F16 coders with the values torch wrote', async () => {
  const f32 = readCoderDir(join(SPARSIFY, 'sae_d64_k8'));
  assert.equal(f32.dIn, 64);
  assert.equal(f32.numLatents, 512);
  assert.equal(f32.dtype, 'float32');
  assert.deepEqual([...f32.tensors.keys()].sort(), ['W_dec', 'b_dec', 'encoder.bias', 'encoder.weight']);
  const raw = readSafetensorsRaw(join(SPARSIFY, 'sae_d64_k8', 'sae.safetensors')).tensors;
  for (const [n, t] of f32.tensors) assert.ok(Buffer.from(t.toBytes()).equals(Buffer.from(raw.get(n)!.data)), n);

  for (const [name, dtype] of [['bf16_sae', 'bfloat16'], ['f16_transcoder_skip', 'float16']] as const) {
    const c = readCoderDir(join(FIXTURES, 'coders', name));
    assert.equal(c.dtype, dtype);
    const expected = loadSafetensors(join(FIXTURES, 'coders', `${name}.expected_f32.safetensors`));
    assert.deepEqual([...c.tensors.keys()].sort(), [...expected.keys()].sort());
    for (const [n, t] of c.tensors) {
      assert.equal(t.dtype, dtype, n);
      const up = await t.to('float32');
      assert.deepEqual([...up.toFloat32Array()], [...expected.get(n)!.toFloat32Array()], `${name} ${n}`);
    }
  }
  const tc = readCoderDir(join(FIXTURES, 'coders', 'f16_transcoder_skip'));
  assert.equal(tc.numLatents, 24); // explicit num_latents, not d_in * expansion_factor
  assert.deepEqual(tc.tensors.get('W_skip')!.shape, [8, 8]);
});

test('readCoderDir(decoder=false) neither needs nor loads W_dec', () => {
  const { dir, cleanup } = tempDir();
  try {
    const enc = readCoderDir(join(SPARSIFY, 'sae_d64_k8'), { decoder: false });
    assert.ok(!enc.tensors.has('W_dec'));
    const d = join(dir, 'c');
    cpSync(join(SPARSIFY, 'sae_d64_k8'), d, { recursive: true });
    const t = loadSafetensors(join(d, 'sae.safetensors'));
    t.delete('W_dec');
    saveSafetensors(join(d, 'sae.safetensors'), t);
    assert.equal(readCoderDir(d, { decoder: false }).tensors.size, 3);
    assert.throws(() => readCoderDir(d), /missing tensor 'W_dec' \(expected shape \[512, 64\]\)/);
  } finally {
    cleanup();
  }
});

test('readCoderDir errors: missing folder, cfg.json, sae.safetensors, tensor; wrong shapes, dtypes, k', () => {
  const { dir, cleanup } = tempDir();
  try {
    assert.throws(() => readCoderDir(join(dir, 'nope')), (e: Error) => e instanceof FileFormatError && /no such folder/.test(e.message));
    const d = join(dir, 'c');
    mkdirSync(d);
    assert.throws(() => readCoderDir(d), /no cfg\.json/);
    mkdirSync(join(d, 'cfg.json'));
    assert.throws(() => readCoderDir(d), (e: Error) => e instanceof FileFormatError && /cfg\.json: a coder config must be a regular file, but this is a folder/.test(e.message));
    rmSync(join(d, 'cfg.json'), { recursive: true });
    writeFileSync(join(d, 'cfg.json'), '{"k": 8, "d_in": 64');
    assert.throws(() => readCoderDir(d), (e: Error) => e instanceof ConfigError && /invalid JSON/.test(e.message));
    const cfg = sparseCoderConfig({ expansionFactor: 8, k: 8 });
    writeFileSync(join(d, 'cfg.json'), coderConfigJson(cfg, 64));
    assert.throws(() => readCoderDir(d), /no sae\.safetensors/);
    const base = loadSafetensors(join(SPARSIFY, 'sae_d64_k8', 'sae.safetensors'));
    const write = (mutate: (m: Map<string, unknown>) => void) => {
      const m = new Map<string, unknown>(base);
      mutate(m);
      saveSafetensors(join(d, 'sae.safetensors'), m as never);
    };
    write((m) => m.delete('encoder.bias'));
    assert.throws(() => readCoderDir(d), /missing tensor 'encoder\.bias' \(expected shape \[512\]\)/);
    write((m) => m.set('b_dec', { dtype: 'F32', shape: [32], data: new Uint8Array(128) }));
    assert.throws(() => readCoderDir(d), /tensor 'b_dec' has shape \[32\] but cfg\.json \(d_in=64, num_latents=512\) needs \[64\]/);
    write((m) => m.set('b_dec', { dtype: 'I32', shape: [64], data: new Uint8Array(256) }));
    assert.throws(() => readCoderDir(d), /tensor 'b_dec' has dtype I32; expected F32, BF16 or F16/);
    write((m) => m.set('W_skip', { dtype: 'F32', shape: [64, 64], data: new Uint8Array(64 * 64 * 4) }));
    assert.throws(() => readCoderDir(d), /'W_skip' but cfg\.json says skip_connection=false/);
    write(() => {});
    assert.equal(readCoderDir(d).tensors.size, 4);
    writeFileSync(join(d, 'cfg.json'), coderConfigJson({ ...cfg, k: 600 }, 64));
    assert.throws(() => readCoderDir(d), (e: Error) => e instanceof ConfigError && /k=600 is larger than num_latents=512/.test(e.message));
    writeFileSync(join(d, 'cfg.json'), coderConfigJson({ ...cfg, k: 7, activation: 'groupmax' }, 64));
    assert.throws(() => readCoderDir(d), /groupmax needs num_latents \(512\) divisible by k \(7\)/);
    writeFileSync(join(d, 'cfg.json'), coderConfigJson({ ...cfg, skipConnection: true }, 64));
    assert.throws(() => readCoderDir(d), /missing tensor 'W_skip'/);
    // A truncated sae.safetensors is a FileFormatError naming it.
    writeFileSync(join(d, 'cfg.json'), coderConfigJson(cfg, 64));
    const bytes = readFileSync(join(d, 'sae.safetensors'));
    writeFileSync(join(d, 'sae.safetensors'), bytes.subarray(0, bytes.length - 100));
    assert.throws(() => readCoderDir(d), (e: Error) => e instanceof FileFormatError && e.message.includes(join(d, 'sae.safetensors')) && /truncated/.test(e.message));
  } finally {
    cleanup();
  }
});

test('writeCoderDir writes byte-identical sparsify folders', () => {
  const { dir, cleanup } = tempDir();
  try {
    for (const src of [join(SPARSIFY, 'sae_d64_k8'), join(SPARSIFY, 'transcoder_d64_k8_skip'), join(SPARSIFY, 'gpt2_transcoder', 'h.0.mlp'), join(FIXTURES, 'coders', 'bf16_sae')]) {
      const c = readCoderDir(src);
      const out = join(dir, 'out');
      writeCoderDir(out, c.cfg, c.dIn, c.tensors);
      for (const f of ['cfg.json', 'sae.safetensors']) assert.ok(readFileSync(join(out, f)).equals(readFileSync(join(src, f))), `${src}/${f}`);
      assert.deepEqual(readdirSync(out).sort(), ['cfg.json', 'sae.safetensors']);
      rmSync(out, { recursive: true });
    }
  } finally {
    cleanup();
  }
});

test('writeCoderDir over an existing folder replaces the pair, keeps other files, and a failed write changes nothing', () => {
  const { dir, cleanup } = tempDir();
  try {
    const a = readCoderDir(join(SPARSIFY, 'sae_d64_k8'));
    const b = readCoderDir(join(SPARSIFY, 'transcoder_d64_k8_skip'));
    const out = join(dir, 'out');
    writeCoderDir(out, a.cfg, a.dIn, a.tensors);
    writeFileSync(join(out, 'notes.txt'), 'kept');
    writeCoderDir(out, b.cfg, b.dIn, b.tensors);
    for (const f of ['cfg.json', 'sae.safetensors']) assert.ok(readFileSync(join(out, f)).equals(readFileSync(join(SPARSIFY, 'transcoder_d64_k8_skip', f))), f);
    assert.equal(readFileSync(join(out, 'notes.txt'), 'utf-8'), 'kept');
    // cfg.json cannot be replaced (a folder sits there): the weights stay as they were, no temporary is left.
    const w0 = readFileSync(join(out, 'sae.safetensors'));
    rmSync(join(out, 'cfg.json'));
    mkdirSync(join(out, 'cfg.json'));
    assert.throws(() => writeCoderDir(out, a.cfg, a.dIn, a.tensors), (e: Error) => e instanceof FileFormatError && /cfg\.json: exists and is not a file/.test(e.message));
    assert.ok(readFileSync(join(out, 'sae.safetensors')).equals(w0), 'weights untouched');
    assert.deepEqual(readdirSync(dir), ['out'], 'no temporary sibling left');
    // A folder under a file is named, not a raw ENOTDIR.
    writeFileSync(join(dir, 'file'), 'x');
    assert.throws(() => writeCoderDir(join(dir, 'file', 'sub'), a.cfg, a.dIn, a.tensors), (e: Error) => e instanceof FileFormatError && /exists and is not a folder/.test(e.message));
  } finally {
    cleanup();
  }
});

test('listCoderDirs: natural order, pattern filter, stray folders skipped, multi-seed layout', () => {
  const { dir, cleanup } = tempDir();
  try {
    const src = join(SPARSIFY, 'gpt2_sae', 'h.0');
    for (const name of ['layers.10', 'layers.2', 'layers.0', 'embed_tokens', 'layers.1.mlp', 'h.0/seed10', 'h.0/seed2', 'h.0/seed0'])
      cpSync(src, join(dir, name), { recursive: true });
    mkdirSync(join(dir, '.huggingface'));
    cpSync(src, join(dir, '.layers.0.tmp-123-abcd'), { recursive: true }); // a killed save's temporary, cfg.json included
    mkdirSync(join(dir, 'best', 'layers.0', 'layers.0'), { recursive: true });
    mkdirSync(join(dir, 'layers.3')); // no cfg.json
    writeFileSync(join(dir, 'config.json'), '{}');
    mkdirSync(join(dir, 'h.0', 'notaseed'));
    assert.deepEqual(listCoderDirs(dir), ['embed_tokens', 'h.0/seed0', 'h.0/seed2', 'h.0/seed10', 'layers.0', 'layers.1.mlp', 'layers.2', 'layers.10']);
    assert.deepEqual(listCoderDirs(dir, 'layers.*'), ['layers.0', 'layers.1.mlp', 'layers.2', 'layers.10']);
    assert.deepEqual(listCoderDirs(dir, 'layers.?'), ['layers.0', 'layers.2']);
    assert.deepEqual(listCoderDirs(dir, 'layers.[01]*'), ['layers.0', 'layers.1.mlp', 'layers.10']);
    assert.deepEqual(listCoderDirs(dir, 'h.0'), ['h.0/seed0', 'h.0/seed2', 'h.0/seed10']);
    assert.deepEqual(listCoderDirs(dir, '*/seed2'), ['h.0/seed2']);
    assert.deepEqual(listCoderDirs(dir, 'nothing*'), []);
    // Each listed name is a loadable folder.
    for (const n of listCoderDirs(dir)) assert.equal(readCoderDir(join(dir, n)).dIn, 64);
    // The real checkpoint folders.
    assert.deepEqual(listCoderDirs(join(SPARSIFY, 'gpt2_sae')), ['h.0', 'h.1']);
    assert.throws(() => listCoderDirs(join(dir, 'config.json')), FileFormatError);
  } finally {
    cleanup();
  }
});
