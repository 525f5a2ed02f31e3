// TransformerLens hook names on the six tiny models: every alias captures, and the captures obey
// TransformerLens's own definitions (resid_mid = resid_pre + attn_out, resid_post = resid_mid +
// mlp_out or, parallel, resid_pre + attn_out + mlp_out, resid_pre_0 = embed (+ pos_embed),
// mlp.hook_post = act(hook_pre) [* hook_pre_linear]) and equal transformers' tensors in the golden
// files (block inputs / outputs, MLP inputs / outputs, attention outputs). Splicing and training
// by TL name; names with no HF tensor are refused with the reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { loadModel, loadSafetensors, resolveHookpoints, Tensor, ValueError } from '@sparsify/core';

import { assertClose, goldenPath, manifest, MODELS, modelDir } from './helpers.js';

const prefix: Record<string, string> = { gpt2: 'transformer.', gpt_neox: 'gpt_neox.', llama: 'model.', qwen2: 'model.', gemma: 'model.', gemma2: 'model.' };
const TOL = 2e-5;

const add = (...xs: Float32Array[]) => xs[0].map((_, i) => xs.reduce((s, x) => s + x[i], 0));
const silu = (v: number) => v / (1 + Math.exp(-v));
const geluTanh = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));

for (const name of MODELS) {
  test(`${name}: TransformerLens aliases follow TL's definitions and equal the HF tensors`, async () => {
    const model = await loadModel(modelDir(name));
    const golden = loadSafetensors(goldenPath(name));
    const g = (key: string) => golden.get(prefix[name] + key)?.toFloat32Array();
    const ids = golden.get('input_ids')!;
    const tokens = Tensor.from(ids.toInt32Array(), ids.shape);
    const aliases = model.tlHookpoints();
    const names = aliases.map((a) => a.name);
    const { captured } = await model.forward(tokens, { hookpoints: names });
    assert.deepEqual([...captured.keys()].sort(), [...names].sort(), 'every alias is captured');
    const c = (n: string) => captured.get(n)!.toFloat32Array();
    for (const a of aliases) assert.equal(captured.get(a.name)!.shape[1], a.width, `${a.name} width`);
    const L = model.numLayers;
    const family = model.family;
    const parallel = model.spec.parallelResidual;
    // resid_pre_0 from the embeddings.
    const embed = family === 'gpt2' ? add(c('hook_embed'), c('hook_pos_embed')) : c('hook_embed');
    assertClose(c('blocks.0.hook_resid_pre'), embed, TOL, 'resid_pre_0 = embed (+ pos_embed)');
    for (let l = 0; l < L; l++) {
      const b = `blocks.${l}.`;
      const blockList = family === 'gpt2' ? 'h' : 'layers';
      const gin = g(`${blockList}.${l}.input`);
      if (gin) assertClose(c(b + 'hook_resid_pre'), gin, TOL, `${b}hook_resid_pre = HF block input`);
      const gout = g(`${blockList}.${l}.output`);
      if (gout) assertClose(c(b + 'hook_resid_post'), gout, TOL, `${b}hook_resid_post = HF block output`);
      if (parallel) {
        assert.ok(!captured.has(b + 'hook_resid_mid'));
        assertClose(c(b + 'hook_resid_post'), add(c(b + 'hook_resid_pre'), c(b + 'hook_attn_out'), c(b + 'hook_mlp_out')), TOL, `${b} parallel residual`);
      } else {
        assertClose(c(b + 'hook_resid_mid'), add(c(b + 'hook_resid_pre'), c(b + 'hook_attn_out')), TOL, `${b}hook_resid_mid = resid_pre + attn_out`);
        assertClose(c(b + 'hook_resid_post'), add(c(b + 'hook_resid_mid'), c(b + 'hook_mlp_out')), TOL, `${b}hook_resid_post = resid_mid + mlp_out`);
      }
      const gmlpIn = g(`${blockList}.${l}.mlp.input`);
      if (gmlpIn) assertClose(c(b + 'mlp.hook_in'), gmlpIn, TOL, `${b}mlp.hook_in = HF mlp input`);
      const pre = c(b + 'mlp.hook_pre');
      if (family === 'gpt2' || family === 'neox') {
        const gact = g(`${blockList}.${l}.mlp.act.output`);
        if (gact) assertClose(c(b + 'mlp.hook_post'), gact, TOL, `${b}mlp.hook_post = HF act output`);
        assert.ok(!captured.has(b + 'mlp.hook_pre_linear'));
      } else {
        const act = family === 'llama' ? silu : geluTanh;
        const up = c(b + 'mlp.hook_pre_linear');
        assertClose(c(b + 'mlp.hook_post'), pre.map((v, i) => act(v) * up[i]), 1e-4, `${b}mlp.hook_post = act(gate) * up`);
      }
      assert.equal(captured.get(b + 'attn.hook_z')!.shape[1], model.width(b + 'attn.hook_z'));
    }
    // Refusals with reasons.
    if (family !== 'gpt2' && family !== 'neox') {
      await assert.rejects(model.forward(tokens, { hookpoints: ['blocks.0.ln2.hook_normalized'] }), (e: Error) => e instanceof ValueError && /x\/rms\(x\)/.test(e.message));
    } else {
      assert.ok(captured.has('blocks.0.ln2.hook_normalized'));
    }
    if (parallel) await assert.rejects(model.forward(tokens, { hookpoints: ['blocks.0.hook_resid_mid'] }), /parallel/);
    await assert.rejects(model.forward(tokens, { hookpoints: ['blocks.0.attn.hook_pattern'] }), /inside the attention/);
    for (const t of captured.values()) t.dispose();
    for (const t of golden.values()) t.dispose();
    tokens.dispose();
    model.dispose();
  });
}

test('TL names in patterns, splicing, captureInputs and training', async () => {
  const model = await loadModel(modelDir('gpt2'));
  assert.deepEqual(resolveHookpoints(model, { hookpoints: ['blocks.*.hook_resid_post'] }), ['blocks.0.hook_resid_post', 'blocks.1.hook_resid_post']);
  assert.deepEqual(resolveHookpoints(model, { hookpoints: ['h.*.mlp'] }), ['h.0.mlp', 'h.1.mlp'], 'HF patterns do not pick up TL names');
  const tokens = Tensor.from(Int32Array.from({ length: 32 }, (_, i) => (i * 37) % 1000), [2, 16]);
  const zero = Tensor.zeros([32, 64]);
  const byTl = await model.forward(tokens, { hookpoints: ['blocks.1.hook_resid_post'], splice: new Map([['blocks.0.hook_mlp_out', zero]]) });
  const byHf = await model.forward(tokens, { hookpoints: ['h.1'], splice: new Map([['h.0.mlp', zero]]) });
  assert.deepEqual(byTl.captured.get('blocks.1.hook_resid_post')!.toFloat32Array(), byHf.captured.get('h.1')!.toFloat32Array());
  await assert.rejects(model.forward(tokens, { hookpoints: ['h.1'], splice: new Map([['blocks.0.hook_resid_mid', zero]]) }), /cannot splice/);
  // A TL name and the HF module it aliases, asked together, give two independent tensors.
  const both = await model.forward(tokens, { hookpoints: ['h.0', 'blocks.0.hook_resid_post'] });
  both.captured.get('h.0')!.dispose();
  assert.equal(both.captured.get('blocks.0.hook_resid_post')!.shape[0], 32);
  const ins = await model.forward(tokens, { hookpoints: ['blocks.0.hook_mlp_out'], captureInputs: true });
  assertClose(ins.capturedInputs!.get('blocks.0.hook_mlp_out')!, (await model.forward(tokens, { hookpoints: ['blocks.0.mlp.hook_in'] })).captured.get('blocks.0.mlp.hook_in')!, 0, 'input of hook_mlp_out = mlp.hook_in');
  assert.equal(model.inputWidth('blocks.0.hook_mlp_out'), 64);
  assert.equal(model.layerOf('blocks.1.hook_resid_pre'), 0);
  model.dispose();

});

test('sparsify train accepts TransformerLens hookpoints (folders named by them)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spx-tl-train-'));
  try {
    const { main } = await import('@sparsify/cli');
    const o = { out: '', err: '' };
    const io = { stdout: { write: (s: string) => (o.out += s) }, stderr: { write: (s: string) => (o.err += s) } };
    const code = await main(['train', '--hookpoints', 'blocks.0.hook_resid_post', 'blocks.1.mlp.hook_post', '--max_examples', '8', '--save_dir', dir, '--run_name', 'tl', '-k', '8', '--expansion_factor', '2'], io);
    assert.equal(code, 0, o.err);
    const { SparseCoder } = await import('@sparsify/core');
    const a = await SparseCoder.loadFromDisk(join(dir, 'tl', 'blocks.0.hook_resid_post'));
    const b = await SparseCoder.loadFromDisk(join(dir, 'tl', 'blocks.1.mlp.hook_post'));
    const { DEFAULT_ASSETS_DIR } = await import('@sparsify/train');
    const m = await loadModel(DEFAULT_ASSETS_DIR);
    assert.equal(a.dIn, m.width('blocks.0.hook_resid_post'));
    assert.equal(b.dIn, m.width('blocks.1.mlp.hook_post'));
    assert.equal(b.dIn, m.width('h.1.mlp.act'));
    m.dispose();
    a.dispose();
    b.dispose();
    // eval splices them in by their TL names, also after conversion to SAELens folders.
    o.out = '';
    assert.equal(await main(['eval', join(dir, 'tl'), DEFAULT_ASSETS_DIR, join(DEFAULT_ASSETS_DIR, 'corpus.jsonl'), '--max_examples', '4', '--batch_size', '2', '--ctx_len', '64'], io), 0, o.err);
    assert.match(o.out, /blocks\.0\.hook_resid_post/);
    assert.match(o.out, /blocks\.1\.mlp\.hook_post/);
    assert.equal(await main(['convert', '--to', 'saelens', join(dir, 'tl'), join(dir, 'tl-sl')], io), 0, o.err);
    o.out = '';
    assert.equal(await main(['eval', join(dir, 'tl-sl'), DEFAULT_ASSETS_DIR, join(DEFAULT_ASSETS_DIR, 'corpus.jsonl'), '--max_examples', '4', '--batch_size', '2', '--ctx_len', '64'], io), 0, o.err);
    assert.match(o.out, /blocks\.1\.mlp\.hook_post/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sparsify hookpoints MODEL --names tl lists aliases, modules and processing caveats', async () => {
  const { main } = await import('@sparsify/cli');
  const o = { out: '', err: '' };
  const io = { stdout: { write: (s: string) => (o.out += s) }, stderr: { write: (s: string) => (o.err += s) } };
  assert.equal(await main(['hookpoints', modelDir('llama'), '--names', 'tl'], io), 0, o.err);
  assert.match(o.out, /^blocks\.0\.mlp\.hook_post +layers\.0\.mlp\.down_proj \(input\) +160 +equal$/m);
  assert.match(o.out, /^blocks\.1\.hook_resid_post +layers\.1 +64/m);
  o.out = '';
  assert.equal(await main(['hookpoints', modelDir('gpt2'), '--names=tl'], io), 0, o.err);
  assert.match(o.out, /^blocks\.0\.attn\.hook_z +h\.0\.attn\.c_proj \(input\) +64 +fold_value_biases/m);
  assert.equal(await main(['hookpoints', modelDir('gpt2'), '--names', 'xx'], io), 2);
  assert.match(o.err, /--names must be hf or tl/);
});

test('resolveHookpoints gives the reason for a TL name with no HF tensor', async () => {
  const model = await loadModel(modelDir('llama'));
  assert.throws(() => resolveHookpoints(model, { hookpoints: ['blocks.0.ln1.hook_normalized'] }), /x\/rms\(x\)/);
  assert.throws(() => resolveHookpoints(model, { hookpoints: ['blocks.9.hook_resid_post'] }), /unknown hookpoint 'blocks.9.hook_resid_post'/);
  model.dispose();
});
