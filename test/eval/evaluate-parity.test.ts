/**
 * evaluate() against PyTorch: transformers' forward with the coder output spliced in by forward
 * hooks (scripts/make-eval-fixtures.py), on the tiny models of the six architectures, for a TopK
 * SAE on a decoder block and a transcoder on an MLP (one Multi-TopK SAE, one transcoder with a
 * skip connection), with and without excluded tokens, in batches of 2 rows over 3 rows.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { SparseCoder, loadModel } from '@sparsify/core';
import { evaluate, type EvalReport } from '@sparsify/train';

const FX = join(import.meta.dirname, '..', 'fixtures');
const MODELS = ['gpt2', 'gpt_neox', 'llama', 'qwen2', 'gemma', 'gemma2'];
const tokens = JSON.parse(readFileSync(join(FX, 'eval', 'tokens.json'), 'utf-8'));
const [ROWS, CTX] = tokens.shape as [number, number];
const ids = Int32Array.from(tokens.input_ids as number[]);
const dataset = {
  length: ROWS,
  ctxLen: CTX,
  rows: (idx: readonly number[] | Int32Array) => Int32Array.from([...idx].flatMap((r) => [...ids.subarray(r * CTX, (r + 1) * CTX)])),
};

// float32 forwards on both sides (native vs transformers): CE/KL/reconstruction agree to ~1e-6
// relative; scores are ratios of differences and get a tolerance relative to their inputs.
function check(got: number, want: number, what: string, rtol = 2e-4, atol = 2e-5) {
  assert.ok(Number.isFinite(got), `${what}: ${got}`);
  assert.ok(Math.abs(got - want) <= atol + rtol * Math.abs(want), `${what}: got ${got}, PyTorch ${want}`);
}

function compare(r: EvalReport, want: any, label: string) {
  assert.equal(r.tokens, want.tokens, `${label}: tokens`);
  check(r.ce_loss_clean, want.ce_loss_clean, `${label} ce_loss_clean`);
  for (const [hook, w] of Object.entries<any>(want.hookpoints)) {
    const g = r.hookpoints[hook] as unknown as Record<string, any>;
    assert.ok(g, `${label}: no result for ${hook}`);
    for (const [k, v] of Object.entries<any>(w)) {
      const what = `${label} ${hook}.${k}`;
      if (k === 'firing_histogram') assert.deepEqual(g[k], v, what);
      else if (k === 'ce_loss_score') check(g[k], v, what, 2e-4, 2e-4 * Math.abs(v) / Math.max(1e-3, w.ce_loss_zero_ablation - w.ce_loss_clean));
      else if (k === 'kl_div_score') check(g[k], v, what, 2e-4, 2e-4 / Math.max(1e-6, w.kl_div_zero_ablation));
      else if (k === 'dead_fraction' || k === 'dense_fraction' || k === 'l0') assert.equal(g[k], v, what);
      // Σ‖ŷ‖² / Σ<y, ŷ>: ill-conditioned when ŷ is nearly orthogonal to y (random coders); the
      // tolerance grows with ‖y‖‖ŷ‖ / |<y, ŷ>| ≈ l2_norm_in * |rrb| / l2_norm_out.
      else if (k === 'relative_reconstruction_bias') check(g[k], v, what, 2e-4 * Math.max(1, (w.l2_norm_in * Math.abs(v)) / w.l2_norm_out));
      else check(g[k], v, what);
    }
  }
  for (const [k, v] of Object.entries<any>(want.all)) {
    const what = `${label} all.${k}`;
    if (k === 'ce_loss_score') check((r.all as any)[k], v, what, 2e-4, 2e-4 * Math.abs(v) / Math.max(1e-3, want.all.ce_loss_zero_ablation - want.all.ce_loss_clean));
    else if (k === 'kl_div_score') check((r.all as any)[k], v, what, 2e-4, 2e-4 / Math.max(1e-6, want.all.kl_div_zero_ablation));
    else check((r.all as any)[k], v, what);
  }
}

for (const name of MODELS) {
  test(`${name}: SAE + transcoder metrics equal transformers with forward hooks`, async () => {
    const expected = JSON.parse(readFileSync(join(FX, 'eval', name, 'expected.json'), 'utf-8'));
    const model = await loadModel(join(FX, 'model', 'models', name));
    const { sae, transcoder } = expected.hookpoints;
    const coders = new Map([
      [sae, await SparseCoder.loadFromDisk(join(FX, 'eval', name, 'sae', sae))],
      [transcoder, await SparseCoder.loadFromDisk(join(FX, 'eval', name, 'transcoder', transcoder))],
    ]);
    try {
      for (const c of expected.cases) {
        const r = await evaluate(model, coders, dataset, { batchSize: 2, excludeTokens: c.exclude_tokens });
        assert.equal(r.rows, ROWS);
        assert.equal(r.ctx_len, CTX);
        compare(r, c, `${name} exclude=[${c.exclude_tokens}]`);
      }
    } finally {
      for (const c of coders.values()) c.dispose();
      model.dispose();
    }
  });
}

test('the shared prefix (spliced forwards resumed above the hookpoint block) changes no number', async () => {
  const model = await loadModel(join(FX, 'model', 'models', 'llama'));
  const coders = new Map([
    ['layers.1', await SparseCoder.loadFromDisk(join(FX, 'eval', 'llama', 'sae', 'layers.0'))],
    ['layers.1.mlp', await SparseCoder.loadFromDisk(join(FX, 'eval', 'llama', 'transcoder', 'layers.1.mlp'))],
  ]);
  const a = await evaluate(model, coders, dataset, { batchSize: 2, excludeTokens: [7] });
  const b = await evaluate(model, coders, dataset, { batchSize: 2, excludeTokens: [7], sharedPrefix: false });
  const strip = (r: EvalReport) => ({ ...r, elapsed_s: 0, tokens_per_s: 0 });
  assert.deepEqual(strip(a), strip(b));
  for (const c of coders.values()) c.dispose();
  model.dispose();
});
