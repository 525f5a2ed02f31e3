// A battery of bad SAELens folders, bad kind fields in our own layout and faults while saving:
// each gets its typed error class with a message naming the file / field / tensor / shape, and
// a failed save leaves no half-written or mixed folder behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  ConfigError, DTypeError, FileFormatError, ShapeError, ValueError, SparsifyError, loadSafetensors, loadSaeLensCoder, saveSafetensors, SparseCoder, Tensor, ThresholdCoder,
} from '@sparsify/core';

const FIX = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'saelens');

type ErrClass = new (...a: never[]) => Error;

/** A fresh copy of a fixture folder, edited by `cfg` (cfg.json object) and `weights` (tensor map). */
async function variant(root: string, name: string, from: string, edit: { cfg?: (c: Record<string, unknown>) => unknown; weights?: (t: Map<string, Tensor>) => void | Promise<void> } = {}): Promise<string> {
  const dir = join(root, name);
  cpSync(join(FIX, from), dir, { recursive: true });
  rmSync(join(dir, 'golden.safetensors'), { force: true });
  if (edit.cfg) {
    const c = JSON.parse(readFileSync(join(dir, 'cfg.json'), 'utf-8')) as Record<string, unknown>;
    const r = edit.cfg(c);
    writeFileSync(join(dir, 'cfg.json'), typeof r === 'string' ? r : JSON.stringify(r === undefined ? c : r));
  }
  if (edit.weights) {
    const t = loadSafetensors(join(dir, 'sae_weights.safetensors'));
    const copy = new Map([...t].map(([k, v]) => [k, v.clone()]));
    for (const v of t.values()) v.dispose();
    await edit.weights(copy);
    saveSafetensors(join(dir, 'sae_weights.safetensors'), copy);
    for (const v of copy.values()) v.dispose();
  }
  return dir;
}

function setTensor(t: Map<string, Tensor>, name: string, data: Float32Array | Int32Array, shape: number[]): void {
  t.get(name)?.dispose();
  t.set(name, Tensor.from(data as Float32Array, shape));
}

function edited(t: Map<string, Tensor>, name: string, f: (a: Float32Array) => void): void {
  const a = t.get(name)!.toFloat32Array().slice();
  f(a);
  setTensor(t, name, a, t.get(name)!.shape);
}

async function expectError(p: Promise<unknown>, cls: ErrClass, msg: RegExp, what: string): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    assert.ok(e instanceof cls, `${what}: expected ${cls.name}, got ${e?.constructor?.name}: ${e?.message}`);
    assert.match(e.message, msg, what);
    return true;
  }, what);
}

/** Both entry points: loadSaeLensCoder (inference) and SparseCoder.loadFromDisk (our coders). */
async function bothLoaders(dir: string, cls: ErrClass, msg: RegExp, what: string): Promise<void> {
  await expectError(loadSaeLensCoder(dir), cls, msg, `${what} (loadSaeLensCoder)`);
  await expectError(SparseCoder.loadFromDisk(dir), cls, msg, `${what} (SparseCoder.loadFromDisk)`);
}

test('SAELens folder files: missing, empty, truncated, corrupt', async () => {
  const root = mkdtempSync(join(tmpdir(), 'sl-faults-files-'));
  try {
    const noCfg = await variant(root, 'no-cfg', 'jumprelu');
    rmSync(join(noCfg, 'cfg.json'));
    await bothLoaders(noCfg, FileFormatError, /cfg\.json/, 'no cfg.json');

    const noW = await variant(root, 'no-weights', 'jumprelu');
    rmSync(join(noW, 'sae_weights.safetensors'));
    await bothLoaders(noW, FileFormatError, /sae_weights\.safetensors/, 'no sae_weights.safetensors');

    const empty = await variant(root, 'empty', 'topk');
    writeFileSync(join(empty, 'sae_weights.safetensors'), '');
    await bothLoaders(empty, FileFormatError, /sae_weights\.safetensors.*(8-byte|bytes)/, 'empty weights');

    const cut = await variant(root, 'truncated', 'topk');
    const f = join(cut, 'sae_weights.safetensors');
    truncateSync(f, Math.floor(statSync(f).size / 2));
    await bothLoaders(cut, FileFormatError, /sae_weights\.safetensors/, 'truncated weights');

    const junk = await variant(root, 'junk', 'standard');
    writeFileSync(join(junk, 'sae_weights.safetensors'), Buffer.from('this is not a safetensors file at all, just text'));
    await bothLoaders(junk, FileFormatError, /sae_weights\.safetensors: not a valid safetensors file/, 'garbage weights');

    const cfgDir = await variant(root, 'cfg-is-dir', 'standard');
    rmSync(join(cfgDir, 'cfg.json'));
    mkdirSync(join(cfgDir, 'cfg.json'));
    await expectError(loadSaeLensCoder(cfgDir), FileFormatError, /cfg\.json/, 'cfg.json is a folder');

    await bothLoaders(join(root, 'absent'), FileFormatError, /absent/, 'no folder at all');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('SAELens cfg.json: not JSON, not an object, missing / mistyped fields, unknown architecture, k and widths', async () => {
  const root = mkdtempSync(join(tmpdir(), 'sl-faults-cfg-'));
  try {
    const cases: [string, string, (c: Record<string, unknown>) => unknown, ErrClass, RegExp][] = [
      ['not-json', 'jumprelu', () => '{"d_in": 16,', ConfigError, /cfg\.json: invalid JSON/],
      ['array', 'jumprelu', () => '[1, 2]', ConfigError, /cfg\.json: not a JSON object/],
      ['null', 'jumprelu', () => 'null', ConfigError, /cfg\.json: not a JSON object/],
      ['no-d_in', 'jumprelu', (c) => { delete c.d_in; }, ConfigError, /d_in must be a positive integer, got undefined/],
      ['no-d_sae', 'standard', (c) => { delete c.d_sae; }, ConfigError, /d_sae must be a positive integer/],
      ['string-d_in', 'topk', (c) => { c.d_in = '16'; }, ConfigError, /d_in must be a positive integer, got "16"/],
      ['float-d_sae', 'topk', (c) => { c.d_sae = 64.5; }, ConfigError, /d_sae must be a positive integer, got 64\.5/],
      ['negative-d_sae', 'jumprelu', (c) => { c.d_sae = -64; }, ConfigError, /d_sae must be a positive integer, got -64/],
      ['arch-unknown', 'jumprelu', (c) => { c.architecture = 'bogus'; }, ConfigError, /architecture "bogus" is not supported; expected one of/],
      ['arch-number', 'jumprelu', (c) => { c.architecture = 3; }, ConfigError, /architecture 3 is not supported/],
      ['apply-string', 'jumprelu', (c) => { c.apply_b_dec_to_input = 'yes'; }, ConfigError, /apply_b_dec_to_input must be a boolean/],
      ['dtype-int', 'jumprelu', (c) => { c.dtype = 'torch.int32'; }, ConfigError, /dtype "torch\.int32" is not one of/],
      ['metadata-string', 'jumprelu', (c) => { c.metadata = 'gpt2'; }, ConfigError, /metadata must be a JSON object/],
      ['k-too-big', 'topk', (c) => { c.k = 65; }, ConfigError, /k=65 is larger than d_sae=64/],
      ['k-float-topk', 'topk', (c) => { c.k = 8.5; }, ConfigError, /k must be a positive integer, got 8\.5/],
      ['k-string', 'topk', (c) => { c.k = '8'; }, ConfigError, /k must be a positive integer, got "8"/],
      ['k-zero', 'batchtopk', (c) => { c.k = 0; }, ConfigError, /k must be a positive number, got 0/],
      ['k-too-big-batchtopk', 'batchtopk', (c) => { c.k = 100; }, ConfigError, /k=100 is larger than d_sae=64/],
      ['rescale-string', 'topk', (c) => { c.rescale_acts_by_decoder_norm = 'true'; }, ConfigError, /rescale_acts_by_decoder_norm must be a boolean/],
      ['widths-missing', 'batchtopk', (c) => { c.architecture = 'matryoshka_batchtopk'; }, ConfigError, /matryoshka_widths must be a list of positive integers/],
      ['widths-decreasing', 'batchtopk', (c) => { c.architecture = 'matryoshka_batchtopk'; c.matryoshka_widths = [32, 16, 64]; }, ConfigError, /matryoshka_widths must be strictly increasing/],
      ['widths-too-wide', 'batchtopk', (c) => { c.architecture = 'matryoshka_batchtopk'; c.matryoshka_widths = [16, 128]; }, ConfigError, /matryoshka_widths.*128.*d_sae=64/],
      ['widths-float', 'batchtopk', (c) => { c.architecture = 'matryoshka_batchtopk'; c.matryoshka_widths = [16.5, 64]; }, ConfigError, /matryoshka_widths must be a list of positive integers/],
      ['lp-norm', 'standard', (c) => { c.lp_norm = 0.5; }, ConfigError, /lp_norm must be a finite number >= 1/],
      ['pre6-k-float', 'standard_v5', (c) => { c.activation_fn_str = 'topk'; c.activation_fn_kwargs = { k: 2.5 }; }, ConfigError, /k must be a positive integer, got 2\.5/],
    ];
    for (const [name, from, edit, cls, msg] of cases) {
      const dir = await variant(root, name, from, { cfg: edit });
      // lp_norm is a training coefficient: only the trainable import reads it.
      if (name !== 'lp-norm') await expectError(loadSaeLensCoder(dir), cls, msg, `${name} (loadSaeLensCoder)`);
      await expectError(SparseCoder.loadFromDisk(dir), cls, msg, `${name} (SparseCoder.loadFromDisk)`);
    }
    // Every message names the file it read.
    const dir = await variant(root, 'named', 'topk', { cfg: (c) => { c.d_in = 0; } });
    await expectError(loadSaeLensCoder(dir), ConfigError, new RegExp(`${join(dir, 'cfg.json').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: d_in`), 'path in message');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('SAELens tensors: int dtypes refused, f16 / bf16 accepted, wrong shapes named, non-finite and negative thresholds', async () => {
  const root = mkdtempSync(join(tmpdir(), 'sl-faults-tensors-'));
  try {
    const D = 16, M = 64;
    const intEnc = await variant(root, 'int-W_enc', 'topk', { weights: (t) => setTensor(t, 'W_enc', new Int32Array(D * M), [D, M]) });
    await bothLoaders(intEnc, FileFormatError, /tensor 'W_enc' has dtype I32; expected a float dtype/, 'int W_enc');

    // SAELens writes its cfg dtype (float16 / bfloat16 models): those load and compute in f32.
    for (const dt of ['float16', 'bfloat16'] as const) {
      const dir = await variant(root, dt, 'jumprelu', {
        cfg: (c) => { c.dtype = dt; },
        weights: async (t) => {
          for (const [k, v] of [...t]) {
            t.set(k, await v.to(dt));
            v.dispose();
          }
        },
      });
      const c = await loadSaeLensCoder(dir);
      assert.ok(c instanceof ThresholdCoder);
      assert.equal(c.numLatents, M);
      c.dispose();
    }

    // F64 files too (SAELens float64 models): read as float32.
    const f64 = join(root, 'float64');
    cpSync(join(FIX, 'jumprelu'), f64, { recursive: true });
    {
      const t = loadSafetensors(join(f64, 'sae_weights.safetensors'));
      const raw = new Map([...t].map(([k, v]) => [k, { dtype: 'F64' as const, shape: [...v.shape], data: new Uint8Array(Float64Array.from(v.toFloat32Array()).buffer) }]));
      const want = t.get('threshold')!.toFloat32Array().slice();
      for (const v of t.values()) v.dispose();
      saveSafetensors(join(f64, 'sae_weights.safetensors'), raw);
      const c = await loadSaeLensCoder(f64);
      assert.ok(c instanceof ThresholdCoder);
      assert.deepEqual(c.params().get('threshold')!.toFloat32Array(), want);
      c.dispose();
    }

    const shapes: [string, string, string, number[], RegExp][] = [
      ['W_enc-transposed', 'topk', 'W_enc', [M, D], /tensor 'W_enc' has shape \[64, 16\] but cfg\.json \(d_in=16, d_sae=64\) needs \[16, 64\]/],
      ['W_dec-wide', 'jumprelu', 'W_dec', [M, D + 1], /tensor 'W_dec' has shape \[64, 17\].*needs \[64, 16\]/],
      ['b_dec-long', 'standard', 'b_dec', [D + 1], /tensor 'b_dec' has shape \[17\].*needs \[16\]/],
      ['b_enc-2d', 'standard', 'b_enc', [1, M], /tensor 'b_enc' has shape \[1, 64\].*needs \[64\]/],
      ['threshold-short', 'jumprelu', 'threshold', [M - 1], /tensor 'threshold' has shape \[63\].*needs \[64\]/],
      ['topk_threshold-vector', 'batchtopk', 'topk_threshold', [2], /tensor 'topk_threshold' has shape \[2\].*needs \[\]/],
    ];
    for (const [name, from, tensor, shape, msg] of shapes) {
      const n = shape.reduce((a, b) => a * b, 1);
      const dir = await variant(root, name, from, { weights: (t) => setTensor(t, tensor, new Float32Array(n), shape) });
      await bothLoaders(dir, FileFormatError, msg, name);
    }
    const missing = await variant(root, 'no-threshold', 'jumprelu', { weights: (t) => { t.get('threshold')!.dispose(); t.delete('threshold'); } });
    await bothLoaders(missing, FileFormatError, /missing tensor 'threshold' \(jumprelu needs \[64\]\)/, 'no threshold');

    const bad: [string, string, string, (a: Float32Array) => void, RegExp][] = [
      ['threshold-nan', 'jumprelu', 'threshold', (a) => { a[5] = NaN; }, /tensor 'threshold' has a non-finite value \(NaN\) at index 5/],
      ['threshold-inf', 'jumprelu', 'threshold', (a) => { a[0] = Infinity; }, /tensor 'threshold' has a non-finite value \(Infinity\) at index 0/],
      ['W_enc-nan', 'topk', 'W_enc', (a) => { a[17] = NaN; }, /tensor 'W_enc' has a non-finite value \(NaN\) at index 17/],
      ['topk_threshold-nan', 'batchtopk', 'topk_threshold', (a) => { a[0] = NaN; }, /tensor 'topk_threshold' has a non-finite value/],
    ];
    for (const [name, from, tensor, f, msg] of bad) {
      const dir = await variant(root, name, from, { weights: (t) => edited(t, tensor, f) });
      await bothLoaders(dir, FileFormatError, msg, name);
    }
    // BatchTopK's threshold is a running minimum of positive activations: never negative.
    const negTk = await variant(root, 'topk_threshold-negative', 'batchtopk', { weights: (t) => edited(t, 'topk_threshold', (a) => { a[0] = -0.5; }) });
    await bothLoaders(negTk, FileFormatError, /tensor 'topk_threshold' is -0\.5; BatchTopK's threshold is never negative/, 'negative topk_threshold');
    // A negative JumpReLU threshold is SAELens's formula (ReLU then the gate) for inference, but it has no log to train.
    const negTh = await variant(root, 'threshold-negative', 'jumprelu', { weights: (t) => edited(t, 'threshold', (a) => { a[3] = -0.1; }) });
    const inf = await loadSaeLensCoder(negTh);
    inf.dispose();
    await expectError(SparseCoder.loadFromDisk(negTh), ConfigError, /threshold\[3\] = -0\.1\d* is not > 0, so it has no log_threshold to train/, 'negative threshold, trainable');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('our layout: the kind fields of cfg.json and the kind tensors are checked on load', async () => {
  const root = mkdtempSync(join(tmpdir(), 'sl-faults-kinds-'));
  try {
    const D = 8;
    const save = async (name: string, cfg: Parameters<typeof SparseCoder.create>[1]) => {
      const c = await SparseCoder.create(D, cfg, { seed: 1 });
      await c.saveToDisk(join(root, name));
      c.dispose();
      return join(root, name);
    };
    const edit = (dir: string, f: (c: Record<string, unknown>) => void) => {
      const p = join(dir, 'cfg.json');
      const c = JSON.parse(readFileSync(p, 'utf-8')) as Record<string, unknown>;
      f(c);
      writeFileSync(p, JSON.stringify(c));
      return dir;
    };
    const jr = await save('jr', { activation: 'jumprelu', expansionFactor: 4 });
    const bt = await save('bt', { activation: 'batchtopk', expansionFactor: 4, k: 3 });
    const mt = await save('mt', { activation: 'batchtopk', expansionFactor: 4, k: 3, matryoshkaPrefixes: [8, 32] });
    const rl = await save('rl', { activation: 'relu', expansionFactor: 4 });
    const cases: [string, string, (c: Record<string, unknown>) => void, RegExp][] = [
      ['jr-bandwidth', jr, (c) => { c.jumprelu_bandwidth = -1; }, /jumprelu_bandwidth must be a finite number > 0, got -1/],
      ['jr-init', jr, (c) => { c.jumprelu_init_threshold = 'x'; }, /jumprelu_init_threshold must be a finite number > 0, got "x"/],
      ['jr-mode', jr, (c) => { c.jumprelu_sparsity_loss_mode = 'l1'; }, /jumprelu_sparsity_loss_mode must be "step" or "tanh", got "l1"/],
      ['bt-lr', bt, (c) => { c.topk_threshold_lr = 2; }, /topk_threshold_lr must be a number in \[0, 1\], got 2/],
      ['bt-k-big', bt, (c) => { c.k = 33; }, /k=33 is larger than num_latents=32/],
      ['bt-k-nan', bt, (c) => { c.k = 'NaN'; }, /k must be a finite number > 0 for activation "batchtopk"/],
      ['mt-decreasing', mt, (c) => { c.matryoshka_prefixes = [32, 8]; }, /matryoshka_prefixes must be strictly increasing, got \[32,8\]/],
      ['mt-too-wide', mt, (c) => { c.matryoshka_prefixes = [8, 64]; }, /matryoshka_prefixes.*64.*num_latents.*32/],
      ['mt-not-list', mt, (c) => { c.matryoshka_prefixes = 8; }, /matryoshka_prefixes must be a list of integers >= 1, got 8/],
      ['rl-lp', rl, (c) => { c.lp_norm = 0; }, /lp_norm must be a finite number >= 1/],
      ['rl-apply', rl, (c) => { c.apply_b_dec_to_input = 1; }, /apply_b_dec_to_input must be a boolean, got 1/],
      ['jr-lp', jr, (c) => { c.lp_norm = 2; }, /lp_norm 2 applies to activation "relu" only/],
      ['activation', jr, (c) => { c.activation = 'gelu'; }, /activation must be one of/],
    ];
    for (const [name, src, f, msg] of cases) {
      const dir = join(root, `case-${name}`);
      cpSync(src, dir, { recursive: true });
      edit(dir, f);
      await expectError(SparseCoder.loadFromDisk(dir), ConfigError, msg, name);
    }
    // Kind tensors: topk_threshold is [1], log_threshold is [M], both finite.
    const tensorCases: [string, string, string, Float32Array, number[], RegExp][] = [
      ['tk-shape', bt, 'topk_threshold', new Float32Array(2), [2], /tensor 'topk_threshold'.*\[2\].*\[1\]/],
      ['lt-shape', jr, 'log_threshold', new Float32Array(31), [31], /tensor 'log_threshold'.*\[31\].*\[32\]/],
      ['tk-nan', bt, 'topk_threshold', new Float32Array([NaN]), [1], /tensor 'topk_threshold' has a non-finite value \(NaN\)/],
      ['lt-inf', jr, 'log_threshold', new Float32Array(32).fill(Infinity), [32], /tensor 'log_threshold' has a non-finite value \(Infinity\)/],
    ];
    for (const [name, src, tensor, data, shape, msg] of tensorCases) {
      const dir = join(root, `t-${name}`);
      cpSync(src, dir, { recursive: true });
      const f = join(dir, 'sae.safetensors');
      const t = loadSafetensors(f);
      const copy = new Map([...t].map(([k, v]) => [k, v.clone()]));
      for (const v of t.values()) v.dispose();
      copy.get(tensor)!.dispose();
      copy.set(tensor, Tensor.from(data, shape));
      saveSafetensors(f, copy);
      for (const v of copy.values()) v.dispose();
      await expectError(SparseCoder.loadFromDisk(dir), FileFormatError, msg, name);
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("saveToDisk(format 'saelens'): a folder that is a file, the other format, a failed write leaves nothing half-written", async () => {
  const root = mkdtempSync(join(tmpdir(), 'sl-faults-save-'));
  try {
    const c = await SparseCoder.create(8, { expansionFactor: 2, k: 2 }, { seed: 3 });
    const j = await SparseCoder.create(8, { activation: 'jumprelu', expansionFactor: 2 }, { seed: 4 });
    writeFileSync(join(root, 'file'), 'x');
    for (const coder of [c, j]) {
      await expectError(coder.saveToDisk(join(root, 'file'), { format: 'saelens' }), FileFormatError, /file exists and is not a folder/, 'DST is a file');
      await expectError(coder.saveToDisk(join(root, 'file', 'sub'), { format: 'saelens' }), FileFormatError, /file exists and is not a folder/, 'DST under a file');
    }
    await expectError(c.saveToDisk(join(root, 'file')), FileFormatError, /file exists and is not a folder/, 'sparsify format onto a file');
    assert.equal(readFileSync(join(root, 'file'), 'utf-8'), 'x');

    // metadata that is not JSON: refused before anything is written, in a new folder ...
    const bigint = { metadata: { n: 1n } as Record<string, unknown> };
    for (const coder of [c, j]) {
      await expectError(coder.saveToDisk(join(root, 'new'), { format: 'saelens', ...bigint }), ValueError, /metadata.*JSON/, 'metadata not JSON');
      assert.ok(!existsSync(join(root, 'new')), 'no folder created');
    }
    // ... and over an existing SAELens folder, which keeps its files.
    await c.saveToDisk(join(root, 'old'), { format: 'saelens' });
    const before = ['cfg.json', 'sae_weights.safetensors'].map((f) => readFileSync(join(root, 'old', f)));
    await expectError(j.saveToDisk(join(root, 'old'), { format: 'saelens', ...bigint }), ValueError, /metadata/, 'overwrite with bad metadata');
    ['cfg.json', 'sae_weights.safetensors'].forEach((f, i) => assert.ok(readFileSync(join(root, 'old', f)).equals(before[i]), `old/${f} untouched`));
    assert.deepEqual(readdirSync(join(root, 'old')).sort(), ['cfg.json', 'sae_weights.safetensors'], 'no temporary file left');

    // A write that fails half-way (cfg.json cannot be replaced: a folder sits there) leaves the weights as they were.
    await c.saveToDisk(join(root, 'stuck'), { format: 'saelens' });
    const w0 = readFileSync(join(root, 'stuck', 'sae_weights.safetensors'));
    rmSync(join(root, 'stuck', 'cfg.json'));
    mkdirSync(join(root, 'stuck', 'cfg.json'));
    await assert.rejects(j.saveToDisk(join(root, 'stuck'), { format: 'saelens' }), SparsifyError);
    assert.ok(readFileSync(join(root, 'stuck', 'sae_weights.safetensors')).equals(w0), 'weights not replaced when cfg.json cannot be');
    assert.deepEqual(readdirSync(join(root, 'stuck')).sort(), ['cfg.json', 'sae_weights.safetensors'], 'no temporary file left');

    // The other format in the folder.
    await c.saveToDisk(join(root, 'sp'));
    await expectError(j.saveToDisk(join(root, 'sp'), { format: 'saelens' }), FileFormatError, /holds sae\.safetensors/, 'sparsify folder');
    await expectError(c.saveToDisk(join(root, 'old')), FileFormatError, /holds sae_weights\.safetensors/, 'SAELens folder');
    await expectError(c.saveToDisk(join(root, 'x'), { format: 'onnx' as 'saelens' }), ValueError, /format must be 'sparsify' or 'saelens', got "onnx"/, 'bad format');
    c.dispose();
    j.dispose();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('ThresholdCoder from tensors: unknown kind, missing parameters, wrong dtypes and shapes', () => {
  const M = 8, D = 4;
  const params = (edit: (p: Map<string, Tensor>) => void = () => {}) => {
    const p = new Map<string, Tensor>([
      ['encoder.weight', Tensor.zeros([M, D])],
      ['encoder.bias', Tensor.zeros([M])],
      ['threshold', Tensor.zeros([M])],
      ['W_dec', Tensor.zeros([M, D])],
      ['b_dec', Tensor.zeros([D])],
    ]);
    edit(p);
    return p;
  };
  const cases: [string, () => ThresholdCoder, ErrClass, RegExp][] = [
    ['kind', () => new ThresholdCoder('swish' as 'relu', params()), ValueError, /kind must be one of relu, jumprelu, gated, got "swish"/],
    ['missing', () => new ThresholdCoder('jumprelu', params((p) => p.delete('threshold'))), ValueError, /missing parameter 'threshold'/],
    ['gated-missing', () => new ThresholdCoder('gated', params()), ValueError, /missing parameter 'r_mag'/],
    ['int', () => new ThresholdCoder('jumprelu', params((p) => p.set('threshold', Tensor.from(new Int32Array(M), [M])))), DTypeError, /'threshold' must be float32, got int32/],
    ['shape', () => new ThresholdCoder('relu', params((p) => p.set('b_dec', Tensor.zeros([D + 1])))), ShapeError, /'b_dec' has shape \[5\], expected \[4\]/],
    ['enc-1d', () => new ThresholdCoder('relu', params((p) => p.set('encoder.weight', Tensor.zeros([M * D])))), ShapeError, /encoder\.weight must be a \[num_latents, d_in\] tensor/],
  ];
  for (const [name, make, cls, msg] of cases)
    assert.throws(make, (e: Error) => e instanceof cls && msg.test(e.message), name);
});

test('SAELens folders we wrote: a broken metadata.sparsify_cfg is named, never silently replaced', async () => {
  const root = mkdtempSync(join(tmpdir(), 'sl-faults-saved-'));
  try {
    const bt = await SparseCoder.create(8, { activation: 'batchtopk', expansionFactor: 2, k: 2 }, { seed: 1 });
    await bt.saveToDisk(join(root, 'bt'), { format: 'saelens' });
    bt.dispose();
    const tk = await SparseCoder.create(8, { expansionFactor: 2, k: 2 }, { seed: 2 });
    await tk.saveToDisk(join(root, 'tk'), { format: 'saelens' });
    tk.dispose();
    const back = await SparseCoder.loadFromDisk(join(root, 'bt'));
    assert.equal(back.cfg.activation, 'batchtopk');
    back.dispose();
    const cases: [string, string, (c: Record<string, any>) => void, (w: Float32Array, t: Map<string, Tensor>) => void, RegExp][] = [
      ['sc-string', 'bt', (c) => { c.metadata.sparsify_cfg = 'x'; }, () => {}, /metadata\.sparsify_cfg: must be a JSON object/],
      ['sc-string-topk', 'tk', (c) => { c.metadata.sparsify_cfg = [1]; }, () => {}, /metadata\.sparsify_cfg: must be a JSON object/],
      ['sc-activation', 'bt', (c) => { c.metadata.sparsify_cfg.activation = 'bogus'; }, () => {}, /metadata\.sparsify_cfg: activation must be one of/],
      ['sc-k-big', 'bt', (c) => { c.metadata.sparsify_cfg.k = 100; }, () => {}, /metadata\.sparsify_cfg: k must be <= num_latents: k=100 is larger than num_latents=16/],
      ['sc-prefix-big', 'bt', (c) => { c.metadata.sparsify_cfg.matryoshka_prefixes = [4, 100]; }, () => {}, /metadata\.sparsify_cfg: matryoshka_prefixes: 100 is larger than num_latents=16/],
      ['sc-threshold-not-shared', 'bt', () => {}, (_, t) => edited(t, 'threshold', (a) => { a[1] = 0.5; }), /metadata\.sparsify_cfg says batchtopk, but the file's threshold is not one value shared by every latent/],
    ];
    for (const [name, from, editCfg, editW, msg] of cases) {
      const dir = join(root, name);
      cpSync(join(root, from), dir, { recursive: true });
      const p = join(dir, 'cfg.json');
      const c = JSON.parse(readFileSync(p, 'utf-8'));
      editCfg(c);
      writeFileSync(p, JSON.stringify(c));
      const f = join(dir, 'sae_weights.safetensors');
      const t = loadSafetensors(f);
      const copy = new Map([...t].map(([k, v]) => [k, v.clone()]));
      for (const v of t.values()) v.dispose();
      editW(new Float32Array(), copy);
      saveSafetensors(f, copy);
      for (const v of copy.values()) v.dispose();
      await expectError(SparseCoder.loadFromDisk(dir), ConfigError, msg, name);
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
