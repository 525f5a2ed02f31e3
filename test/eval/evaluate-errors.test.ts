/** Bad input to evaluate() gives typed errors that name the problem. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ConfigError, DatasetError, ShapeError, SparseCoder, ValueError, loadModel, loadSafetensors, saveSafetensors } from '@sparsify/core';
import { evaluate } from '@sparsify/train';

const FX = join(import.meta.dirname, '..', 'fixtures');
const GPT2 = join(FX, 'model', 'models', 'gpt2');
const rows = (n: number, ctx: number) => ({
  length: n,
  ctxLen: ctx,
  rows: (idx: readonly number[] | Int32Array) => Int32Array.from({ length: idx.length * ctx }, (_, i) => 10 + (i % 50)),
});

test('hookpoint not in the model, coder width not matching the module, no coders', async () => {
  const model = await loadModel(GPT2);
  const sae = await SparseCoder.loadFromDisk(join(FX, 'eval', 'gpt2', 'sae', 'h.0'));
  const tc = await SparseCoder.loadFromDisk(join(FX, 'eval', 'gpt2', 'transcoder', 'h.1.mlp'));
  const wide = await SparseCoder.create(32, { k: 4, numLatents: 64 });
  try {
    await assert.rejects(evaluate(model, new Map([['h.7', sae]]), rows(2, 8)), (e: Error) => e instanceof ValueError && /'h\.7' is not a module/.test(e.message));
    await assert.rejects(evaluate(model, new Map([['h.0', wide]]), rows(2, 8)), (e: Error) => e instanceof ShapeError && /d_in 32.*'h\.0' outputs 64/.test(e.message));
    // The transcoder's input width is checked too: h.1.mlp.c_fc takes 64 inputs but outputs 256.
    await assert.rejects(evaluate(model, new Map([['h.1.mlp.c_fc', tc]]), rows(2, 8)), (e: Error) => e instanceof ShapeError && /outputs 256/.test(e.message));
    await assert.rejects(evaluate(model, new Map(), rows(2, 8)), (e: Error) => e instanceof ValueError && /no sparse coders/.test(e.message));
    // A multi-seed name maps to its hookpoint.
    const r = await evaluate(model, new Map([['h.0/seed3', sae]]), rows(1, 8));
    assert.equal(r.hookpoints['h.0/seed3'].hookpoint, 'h.0');
  } finally {
    sae.dispose();
    tc.dispose();
    wide.dispose();
    model.dispose();
  }
});

test('empty dataset, rows too short, every token excluded', async () => {
  const model = await loadModel(GPT2);
  const sae = await SparseCoder.loadFromDisk(join(FX, 'eval', 'gpt2', 'sae', 'h.0'));
  const coders = new Map([['h.0', sae]]);
  try {
    await assert.rejects(evaluate(model, coders, rows(0, 8)), (e: Error) => e instanceof DatasetError && /empty/.test(e.message));
    await assert.rejects(evaluate(model, coders, rows(2, 1)), (e: Error) => e instanceof DatasetError && /ctx_len must be at least 2/.test(e.message));
    await assert.rejects(evaluate(model, coders, rows(2, 600)), (e: Error) => e instanceof DatasetError && /max_position_embeddings 512/.test(e.message));
    const all = Array.from({ length: 50 }, (_, i) => 10 + i);
    await assert.rejects(evaluate(model, coders, rows(2, 8), { excludeTokens: all }), (e: Error) => e instanceof DatasetError && /every token/.test(e.message));
  } finally {
    sae.dispose();
    model.dispose();
  }
});

test('a model without an LM head (AutoModel checkpoint) is refused, naming the head', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spx-eval-base-'));
  try {
    const all = loadSafetensors(join(GPT2, 'model.safetensors'));
    saveSafetensors(join(dir, 'model.safetensors'), new Map([...all].map(([n, t]) => [n.replace(/^transformer\./, ''), t])));
    const cfg = JSON.parse(readFileSync(join(GPT2, 'config.json'), 'utf-8'));
    cfg.architectures = ['GPT2Model'];
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    const model = await loadModel(dir);
    const sae = await SparseCoder.loadFromDisk(join(FX, 'eval', 'gpt2', 'sae', 'h.0'));
    await assert.rejects(
      evaluate(model, new Map([['h.0', sae]]), rows(2, 8)),
      (e: Error) => e instanceof ConfigError && /GPT2Model has no language-model head \(lm_head\)/.test(e.message),
    );
    sae.dispose();
    model.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
