// SAELens coder folders: every fixture variant (written by scripts/make-saelens-fixtures.py from
// SAELens's documented layout, golden values from SAELens's formulas in PyTorch) loads and
// encodes / decodes to the golden; the float64 reference agrees; TopK round trips
// sparsify -> SAELens -> sparsify are bitwise; bad folders get typed errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  ConfigError, FileFormatError, loadSafetensors, loadSaeLensCoder, readSaeLensConfig, SparseCoder, Tensor, ThresholdCoder, Rng,
} from '@sparsify/core';

const FIX = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'saelens');

function golden(name: string): { x: Tensor; acts: Float32Array; out: Float32Array; N: number; M: number; D: number } {
  const g = loadSafetensors(join(FIX, name, 'golden.safetensors'));
  const x = g.get('x')!.clone();
  const f = g.get('feature_acts')!;
  const o = g.get('sae_out')!;
  const r = { x, acts: f.toFloat32Array().slice(), out: o.toFloat32Array().slice(), N: f.shape[0], M: f.shape[1], D: o.shape[1] };
  for (const t of g.values()) t.dispose();
  return r;
}

/** Dense [N, M] from the padded sparse form. */
function dense(acts: Tensor, idx: Tensor, N: number, M: number): Float32Array {
  const a = acts.toFloat32Array(), i = idx.toInt32Array(), W = acts.shape[1];
  const out = new Float32Array(N * M);
  for (let n = 0; n < N; n++) for (let j = 0; j < W; j++) if (a[n * W + j] !== 0) out[n * M + i[n * W + j]] += a[n * W + j];
  return out;
}

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++)
    assert.ok(Math.abs(got[i] - want[i]) <= tol * Math.max(scale, 1), `${what}[${i}]: got ${got[i]}, want ${want[i]}`);
}

const VARIANTS: [string, string][] = [
  ['standard', 'relu'], ['standard_v5', 'relu'], ['jumprelu', 'jumprelu'], ['gated', 'gated'], ['batchtopk', 'jumprelu'],
  ['topk', 'topk'], ['topk_rescale', 'topk'], ['topk_v5', 'topk'],
];

for (const [variant, kind] of VARIANTS) {
  test(`SAELens ${variant}: encode / decode equal SAELens's formulas`, async () => {
    const g = golden(variant);
    const coder = await loadSaeLensCoder(join(FIX, variant));
    if (kind === 'topk') {
      assert.ok(coder instanceof SparseCoder);
      const { topActs, topIndices } = await coder.encode(g.x);
      const f = dense(topActs, topIndices, g.N, g.M);
      assertClose(f, g.acts, 1e-5, 'feature_acts');
      for (let i = 0; i < f.length; i++) assert.equal(f[i] > 0, g.acts[i] > 0, `support at ${i}`);
      assertClose((await coder.decode(topActs, topIndices)).toFloat32Array(), g.out, 1e-5, 'sae_out');
      // SparseCoder.loadFromDisk reads the same folder.
      const again = await SparseCoder.loadFromDisk(join(FIX, variant));
      assert.deepEqual(again.params().get('encoder.weight')!.toFloat32Array(), coder.params().get('encoder.weight')!.toFloat32Array());
      again.dispose();
    } else {
      assert.ok(coder instanceof ThresholdCoder);
      assert.equal(coder.kind, kind);
      const lat = await coder.encode(g.x);
      const f = dense(lat.topActs, lat.topIndices, g.N, g.M);
      assertClose(f, g.acts, 1e-5, 'feature_acts');
      const counts = lat.counts.toInt32Array();
      for (let n = 0; n < g.N; n++) {
        let nz = 0;
        for (let m = 0; m < g.M; m++) nz += g.acts[n * g.M + m] > 0 ? 1 : 0;
        assert.equal(counts[n], nz, `row ${n} count`);
      }
      assert.equal(lat.topActs.shape[1], Math.max(1, ...counts), 'padded to the widest row');
      const ref = coder.encodeReference(g.x);
      assertClose(f, ref, 1e-5, 'vs float64 reference');
      const fw = await coder.forward(g.x);
      assertClose(fw.saeOut.toFloat32Array(), g.out, 1e-5, 'sae_out');
      assert.ok(Number.isFinite(fw.fvu) && fw.fvu > 0);
    }
    coder.dispose();
    g.x.dispose();
  });
}

test('upgrade of pre-6 configs: topk from activation_fn_kwargs, bool normalize_activations, metadata', () => {
  const v5 = readSaeLensConfig(join(FIX, 'topk_v5'));
  assert.equal(v5.architecture, 'topk');
  assert.equal(v5.k, 6);
  assert.equal(v5.upgraded, true);
  assert.equal(v5.normalizeActivations, 'none');
  assert.equal(v5.metadata.hook_name, 'blocks.0.hook_resid_pre');
  const v6 = readSaeLensConfig(join(FIX, 'standard'));
  assert.equal(v6.upgraded, false);
  assert.equal(v6.metadata.model_name, 'tiny-gpt2');
});

test('expected_average_only_in: folded with normScalingFactor, else loaded unfolded with a warning', async () => {
  const g = golden('expected_average');
  const folded = await loadSaeLensCoder(join(FIX, 'expected_average'), { normScalingFactor: 2.5 });
  assert.ok(folded instanceof ThresholdCoder);
  const fw = await folded.forward(g.x);
  assertClose(fw.saeOut.toFloat32Array(), g.out, 1e-5, 'folded sae_out on raw x');
  const warnings: string[] = [];
  const onWarn = (w: Error) => warnings.push(w.message);
  process.on('warning', onWarn);
  const raw = await loadSaeLensCoder(join(FIX, 'expected_average'));
  await new Promise((r) => setImmediate(r));
  process.off('warning', onWarn);
  assert.ok(warnings.some((m) => m.includes('expected_average_only_in')), warnings.join('\n'));
  raw.dispose();
  folded.dispose();
  g.x.dispose();
});

function randn(n: number, seed: number): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => r.normal());
}

test('TopK: sparsify -> SAELens -> sparsify is bitwise identical (cfg.json and sae.safetensors)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'saelens-rt-'));
  try {
    const a = await SparseCoder.create(24, { expansionFactor: 4, k: 5, multiTopk: true }, { seed: 7 });
    const x = Tensor.from(randn(30 * 24, 2), [30, 24]);
    await a.initBiasesFromBatch(x);
    await a.saveToDisk(join(dir, 'orig'));
    await a.saveToDisk(join(dir, 'sl'), { format: 'saelens', hookName: 'blocks.0.hook_resid_pre' });
    const cfg = JSON.parse(readFileSync(join(dir, 'sl', 'cfg.json'), 'utf-8'));
    assert.equal(cfg.architecture, 'topk');
    assert.equal(cfg.k, 5);
    assert.equal(cfg.rescale_acts_by_decoder_norm, false);
    assert.equal(cfg.metadata.hook_name, 'blocks.0.hook_resid_pre');
    assert.equal(cfg.metadata.sae_lens_version, '6.18.0');
    const st = loadSafetensors(join(dir, 'sl', 'sae_weights.safetensors'));
    assert.deepEqual([...st.keys()].sort(), ['W_dec', 'W_enc', 'b_dec', 'b_enc']);
    assert.deepEqual(st.get('W_enc')!.shape, [24, 96]);
    for (const t of st.values()) t.dispose();
    const b = await SparseCoder.loadFromDisk(join(dir, 'sl'));
    // Same outputs as the original.
    const ea = await a.encode(x), eb = await b.encode(x);
    assert.deepEqual(eb.topIndices.toInt32Array(), ea.topIndices.toInt32Array());
    assert.deepEqual(eb.topActs.toFloat32Array(), ea.topActs.toFloat32Array());
    await b.saveToDisk(join(dir, 'back'));
    for (const f of ['cfg.json', 'sae.safetensors'])
      assert.ok(readFileSync(join(dir, 'back', f)).equals(readFileSync(join(dir, 'orig', f))), `${f} differs after the round trip`);
    a.dispose();
    b.dispose();
    x.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ThresholdCoder saves SAELens folders that load back to the same coder', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'saelens-thr-'));
  try {
    for (const variant of ['standard_v5', 'jumprelu', 'gated']) {
      const g = golden(variant);
      const c = (await loadSaeLensCoder(join(FIX, variant))) as ThresholdCoder;
      await c.saveToDisk(join(dir, variant));
      const d = (await loadSaeLensCoder(join(dir, variant))) as ThresholdCoder;
      assert.equal(d.kind, c.kind);
      assert.equal(d.applyBDecToInput, c.applyBDecToInput);
      for (const [name, t] of c.params()) assert.deepEqual(d.params().get(name)!.toFloat32Array(), t.toFloat32Array(), `${variant} ${name}`);
      const cfg = readSaeLensConfig(join(dir, variant));
      assert.equal(cfg.metadata.hook_name, 'blocks.0.hook_resid_pre');
      await assert.rejects(c.saveToDisk(join(dir, variant + '-sp'), { format: 'sparsify' as 'saelens' }), ConfigError);
      c.dispose();
      d.dispose();
      g.x.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('typed errors: unsupported architectures and modes, missing or misshapen tensors, mixed folders, no TopK equivalent', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'saelens-bad-'));
  try {
    const edit = (name: string, change: (c: Record<string, unknown>) => void) => {
      const d = join(dir, name);
      cpSync(join(FIX, 'standard'), d, { recursive: true });
      const c = JSON.parse(readFileSync(join(d, 'cfg.json'), 'utf-8'));
      change(c);
      writeFileSync(join(d, 'cfg.json'), JSON.stringify(c));
      return d;
    };
    await assert.rejects(loadSaeLensCoder(edit('tc', (c) => { c.architecture = 'transcoder'; })), (e: Error) => e instanceof ConfigError && /transcoder/.test(e.message));
    await assert.rejects(loadSaeLensCoder(edit('ln', (c) => { c.normalize_activations = 'layer_norm'; })), (e: Error) => e instanceof ConfigError && /layer_norm/.test(e.message));
    await assert.rejects(loadSaeLensCoder(edit('dsae', (c) => { c.d_sae = 65; })), (e: Error) => e instanceof FileFormatError && /W_enc/.test(e.message));
    await assert.rejects(loadSaeLensCoder(edit('jr', (c) => { c.architecture = 'jumprelu'; })), (e: Error) => e instanceof FileFormatError && /threshold/.test(e.message));
    await assert.rejects(loadSaeLensCoder(edit('dt', (c) => { c.dtype = 'int8'; })), (e: Error) => e instanceof ConfigError && /dtype/.test(e.message));
    await assert.rejects(SparseCoder.loadFromDisk(join(FIX, 'gated')), (e: Error) => e instanceof ConfigError && /does not load as a trainable SAELens kind/.test(e.message));
    const a = await SparseCoder.create(8, { expansionFactor: 2, k: 2 });
    await a.saveToDisk(join(dir, 'sp'));
    await assert.rejects(a.saveToDisk(join(dir, 'sp'), { format: 'saelens' }), FileFormatError);
    assert.ok(!existsSync(join(dir, 'sp', 'sae_weights.safetensors')));
    const gm = await SparseCoder.create(8, { expansionFactor: 2, k: 2, activation: 'groupmax' });
    await assert.rejects(gm.saveToDisk(join(dir, 'gm'), { format: 'saelens' }), (e: Error) => e instanceof ConfigError && /groupmax/.test(e.message));
    const tc = await SparseCoder.create(8, { expansionFactor: 2, k: 2, transcode: true });
    await assert.rejects(tc.saveToDisk(join(dir, 'tcx'), { format: 'saelens' }), (e: Error) => e instanceof ConfigError && /transcoder/.test(e.message));
    a.dispose();
    gm.dispose();
    tc.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('threshold encoder across several latent tiles and row blocks equals the float64 reference', async () => {
  const D = 40, M = 1500, N = 300;
  const r = new Rng(11);
  const p = new Map<string, Tensor>([
    ['encoder.weight', Tensor.from(Float32Array.from({ length: M * D }, () => r.normal() / Math.sqrt(D)), [M, D])],
    ['encoder.bias', Tensor.from(Float32Array.from({ length: M }, () => r.normal() * 0.3), [M])],
    ['threshold', Tensor.from(Float32Array.from({ length: M }, () => Math.abs(r.normal())), [M])],
    ['W_dec', Tensor.from(Float32Array.from({ length: M * D }, () => r.normal()), [M, D])],
    ['b_dec', Tensor.from(Float32Array.from({ length: D }, () => r.normal() * 0.1), [D])],
  ]);
  const c = new ThresholdCoder('jumprelu', p);
  const x = Tensor.from(randn(N * D, 5), [N, D]);
  const lat = await c.encode(x);
  const ref = c.encodeReference(x);
  const f = dense(lat.topActs, lat.topIndices, N, M);
  let mism = 0;
  for (let i = 0; i < f.length; i++) if ((f[i] > 0) !== (ref[i] > 0)) mism++;
  assert.ok(mism <= 2, `${mism} support mismatches (only f32 rounding at the threshold may flip one)`);
  for (let i = 0; i < f.length; i++) if (f[i] > 0 && ref[i] > 0) assert.ok(Math.abs(f[i] - ref[i]) <= 1e-5 * Math.max(1, Math.abs(ref[i])), `act ${i}`);
  // Slots are in latent order within each row; padding is value 0 at index 0.
  const W = lat.topActs.shape[1], idx = lat.topIndices.toInt32Array(), acts = lat.topActs.toFloat32Array(), counts = lat.counts.toInt32Array();
  for (let n = 0; n < N; n++) {
    for (let j = 1; j < counts[n]; j++) assert.ok(idx[n * W + j] > idx[n * W + j - 1]);
    for (let j = counts[n]; j < W; j++) assert.ok(acts[n * W + j] === 0 && idx[n * W + j] === 0);
  }
  await assert.rejects(c.encode(Tensor.from(new Float32Array([NaN, ...new Float32Array(D - 1)]), [1, D])), /NaN/);
  await assert.rejects(c.encode(Tensor.from(new Float32Array(D + 1), [1, D + 1])), /ShapeError|must be a float32/);
  c.dispose();
  x.dispose();
});

test('sparsify eval scores SAELens JumpReLU / gated / standard folders (variable-k latents) on their hook', async () => {
  const { main } = await import('@sparsify/cli');
  const { DEFAULT_ASSETS_DIR } = await import('@sparsify/train');
  const { loadModel } = await import('@sparsify/core');
  const dir = mkdtempSync(join(tmpdir(), 'saelens-eval-'));
  try {
    // Coders on the embedded model's blocks.0.hook_resid_post (h.0), one per kind.
    const model = await loadModel(DEFAULT_ASSETS_DIR);
    const D = model.width('blocks.0.hook_resid_post'), M = 64;
    model.dispose();
    const r = new Rng(3);
    const rnd = (n: number, s: number) => Float32Array.from({ length: n }, () => r.normal() * s);
    for (const kind of ['relu', 'jumprelu', 'gated'] as const) {
      const p = new Map<string, Tensor>([
        ['encoder.weight', Tensor.from(rnd(M * D, 1 / Math.sqrt(D)), [M, D])],
        ['encoder.bias', Tensor.from(rnd(M, 0.1), [M])],
        ['W_dec', Tensor.from(rnd(M * D, 0.1), [M, D])],
        ['b_dec', Tensor.zeros([D])],
      ]);
      if (kind === 'jumprelu') p.set('threshold', Tensor.from(new Float32Array(M).fill(0.2), [M]));
      if (kind === 'gated') {
        p.set('r_mag', Tensor.zeros([M]));
        p.set('b_mag', Tensor.zeros([M]));
      }
      const c = new ThresholdCoder(kind, p);
      await c.saveToDisk(join(dir, kind, 'blocks.0.hook_resid_post'));
      c.dispose();
    }
    for (const kind of ['relu', 'jumprelu', 'gated']) {
      const o = { out: '', err: '' };
      const io = { stdout: { write: (s: string) => (o.out += s) }, stderr: { write: (s: string) => (o.err += s) } };
      const code = await main(['eval', join(dir, kind, 'blocks.0.hook_resid_post'), DEFAULT_ASSETS_DIR, join(DEFAULT_ASSETS_DIR, 'corpus.jsonl'),
        '--max_examples', '4', '--batch_size', '2', '--ctx_len', '32', '--json', join(dir, `${kind}.json`)], io);
      assert.equal(code, 0, o.err);
      const text = readFileSync(join(dir, `${kind}.json`), 'utf-8');
      assert.ok(/"l0":\s*[1-9]/.test(text), `${kind}: a non-zero L0 from the variable-k latents`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
