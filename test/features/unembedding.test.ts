// readUnembedding picks each architecture's unembedding (tied or not) and final norm; logit
// effects go through the norm's linear part.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { loadSafetensors, readUnembedding } from '@sparsify/core';
import { summarize, throughFinalNorm } from '@sparsify/train';

const MODELS = join(import.meta.dirname, '..', 'fixtures', 'model', 'models');

const expected: Record<string, { head: string; norm: string; kind: string }> = {
  gpt2: { head: 'transformer.wte.weight', norm: 'transformer.ln_f.weight', kind: 'layernorm' },
  gpt_neox: { head: 'embed_out.weight', norm: 'gpt_neox.final_layer_norm.weight', kind: 'layernorm' },
  llama: { head: 'lm_head.weight', norm: 'model.norm.weight', kind: 'rms' },
  qwen2: { head: 'model.embed_tokens.weight', norm: 'model.norm.weight', kind: 'rms' },
  gemma: { head: 'model.embed_tokens.weight', norm: 'model.norm.weight', kind: 'rms1p' },
  gemma2: { head: 'model.embed_tokens.weight', norm: 'model.norm.weight', kind: 'rms1p' },
};

for (const [arch, e] of Object.entries(expected)) {
  test(`${arch}: the unembedding is ${e.head}, the final norm ${e.norm} (${e.kind})`, () => {
    const dir = join(MODELS, arch);
    const u = readUnembedding(dir, JSON.parse(readFileSync(join(dir, 'config.json'), 'utf-8')));
    const file = loadSafetensors(join(dir, 'model.safetensors'), { names: [e.head, e.norm] });
    assert.equal(u.normKind, e.kind);
    assert.deepEqual(u.weight.shape, file.get(e.head)!.shape);
    assert.deepEqual(u.weight.toFloat32Array(), file.get(e.head)!.toFloat32Array());
    assert.deepEqual(u.normWeight, file.get(e.norm)!.toFloat32Array());
    u.weight.dispose();
    for (const t of file.values()) t.dispose();
  });
}

test('throughFinalNorm: LayerNorm centres then scales; RMSNorm scales; Gemma scales by 1 + weight', () => {
  const row = Float32Array.from([1, 2, 3, 6]);
  const normWeight = Float32Array.from([1, 0.5, 2, -1]);
  const mk = (normKind: 'layernorm' | 'rms' | 'rms1p') => ({ weight: undefined as never, normKind, normWeight });
  assert.deepEqual(Array.from(throughFinalNorm(row, mk('layernorm'))), [-2, -0.5, 0, -3]);
  assert.deepEqual(Array.from(throughFinalNorm(row, mk('rms'))), [1, 1, 6, -6]);
  assert.deepEqual(Array.from(throughFinalNorm(row, mk('rms1p'))), [2, 3, 9, 0]);
});

test('summarize: top and bottom entries with ties by lower token id, histogram over the whole vector', () => {
  const v = Float32Array.from([0.5, 2, -1, 2, -1, 0, 3]);
  const s = summarize(v, 3, 4);
  assert.deepEqual(s.pos, [{ token: 6, value: 3 }, { token: 1, value: 2 }, { token: 3, value: 2 }]);
  assert.deepEqual(s.neg, [{ token: 2, value: -1 }, { token: 4, value: -1 }, { token: 5, value: 0 }]);
  assert.deepEqual(s.histogram, { min: -1, max: 3, counts: [2, 2, 0, 3] });
});
