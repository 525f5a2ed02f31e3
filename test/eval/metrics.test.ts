/**
 * The metric formulas on hand-made cases (values worked out by hand or in the reference's
 * conformance table: SAELens PR #665's two-token example).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { CleanLogits, FIRING_HISTOGRAM_EDGES, ReconstructionStats, addKeptRows, ceLossScore, keepMask, klDivScore } from '@sparsify/train';

const close = (a: number, b: number, tol = 1e-4, what = '') => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);
const f32 = (a: number[]) => Float32Array.from(a);

function recon(x: number[][], xHat: number[][], keep?: number[]) {
  const D = x[0].length;
  const k = Uint8Array.from(keep ?? x.map(() => 1));
  const mean = new Float64Array(D);
  const n = addKeptRows(mean, f32(x.flat()), k);
  for (let d = 0; d < D; d++) mean[d] /= n;
  const s = new ReconstructionStats(D, 4, mean);
  // One latent per token (index = row % 4), activation 1.
  s.add(f32(x.flat()), f32(xHat.flat()), f32(x.map(() => 1)), Int32Array.from(x.map((_, i) => i % 4)), k);
  return s.result();
}

test('reconstruction: the two-token case (EV about the mean, mse, cosine, l2 ratio, bias)', () => {
  const r = recon([[2, 0], [0, 4]], [[2, 1], [0, 3]]);
  close(r.explained_variance, 0.8, 1e-12, 'explained_variance'); // mean [1,2]: total variance 5, residual 1
  close(r.fvu, 0.2, 1e-12, 'fvu');
  close(r.mse, 1.0, 1e-12, 'mse'); // per-token squared error summed over dims, mean over tokens
  close(r.cosine_similarity, (2 / Math.sqrt(5) + 1) / 2, 1e-7, 'cosine'); // 0.9472
  close(r.l2_ratio, (Math.sqrt(5) / 2 + 0.75) / 2, 1e-7, 'l2_ratio'); // 0.9340
  close(r.relative_reconstruction_bias, 7 / 8, 1e-12, 'relative_reconstruction_bias');
  close(r.l2_norm_in, 3, 1e-12, 'l2_norm_in');
});

test('reconstruction: three tokens, EV mean-centred (0.8421, not the legacy 0.8389)', () => {
  const r = recon([[2, 0], [0, 4], [1, 0]], [[2, 1], [0, 3], [1, 0]]);
  close(r.explained_variance, 0.8421, 1e-4, 'explained_variance');
});

test('reconstruction: excluded tokens are left out of every average', () => {
  const a = recon([[2, 0], [0, 4], [50, -7]], [[2, 1], [0, 3], [0, 0]], [1, 1, 0]);
  const b = recon([[2, 0], [0, 4]], [[2, 1], [0, 3]]);
  for (const k of ['fvu', 'mse', 'cosine_similarity', 'l2_ratio', 'l0', 'l1'] as const) close(a[k], b[k], 1e-12, k);
});

test('sparsity: l0, dead and dense fractions, firing histogram', () => {
  const D = 1;
  const N = 20;
  const s = new ReconstructionStats(D, 4, new Float64Array([0]));
  const y = f32(Array.from({ length: N }, (_, i) => i));
  // k = 2 slots per token: latent 0 fires on every token, latent 1 on token 0 only (1/20 = 5%),
  // latent 2 never (its slot holds a zero activation), latent 3 is never selected.
  const acts: number[] = [];
  const idx: number[] = [];
  for (let i = 0; i < N; i++) {
    acts.push(1.5, i === 0 ? -2 : 0);
    idx.push(0, i === 0 ? 1 : 2);
  }
  s.add(y, y, f32(acts), Int32Array.from(idx), new Uint8Array(N).fill(1));
  const r = s.result();
  close(r.l0, 21 / 20, 1e-12, 'l0');
  close(r.l1, (1.5 * 20 + 2) / 20, 1e-12, 'l1');
  close(r.dead_fraction, 0.5, 0, 'dead_fraction');
  close(r.dense_fraction, 0.25, 0, 'dense_fraction');
  assert.deepEqual(r.firing_histogram.log10_edges, [...FIRING_HISTOGRAM_EDGES]);
  assert.equal(r.firing_histogram.counts.length, 14);
  // log10(1) = 0 -> the last bin; log10(0.05) = -1.30 -> bin [-1.5, -1).
  const expected = new Array(14).fill(0);
  expected[13] = 1;
  expected[11] = 1;
  assert.deepEqual(r.firing_histogram.counts, expected);
});

test('scores: ce_loss_score and kl_div_score', () => {
  close(ceLossScore(2, 2.5, 4), 0.75, 1e-15, 'ce');
  close(ceLossScore(2, 2, 4), 1, 0, 'ce perfect');
  close(ceLossScore(2, 4, 4), 0, 0, 'ce as bad as ablation');
  close(ceLossScore(2, 5, 4), -0.5, 1e-15, 'ce worse than ablation');
  close(klDivScore(0.1, 0.4), 0.75, 1e-15, 'kl');
  close(klDivScore(0, 0.4), 1, 0, 'kl perfect');
});

test('cross-entropy: next-token targets, HF shift, mean over kept input positions', () => {
  // One row of 3 tokens, V = 3. Position 0 predicts token 1 (id 2), position 1 predicts token 2 (id 0).
  const tokens = Int32Array.from([1, 2, 0]);
  const logits = f32([0, 0, Math.log(3), /* */ Math.log(2), 0, 0, /* last: no target */ 5, 5, 5]);
  const ref = new CleanLogits(logits, tokens, keepMask(tokens, new Set()), 1, 3, 3);
  const ce = ref.crossEntropy();
  assert.equal(ce.count, 2);
  close(ce.sum / ce.count, (-Math.log(3 / 5) - Math.log(2 / 4)) / 2, 1e-6, 'ce');
});

test('KL: zero for a shifted copy, log V - H(p) against uniform; true KL, not cross-entropy', () => {
  const tokens = Int32Array.from([0, 1]);
  const logits = f32([1, 2, 3, -1, 0, 4]);
  const ref = new CleanLogits(logits, tokens, keepMask(tokens, new Set()), 1, 2, 3);
  const shifted = f32([11, 12, 13, 2, 3, 7]);
  const s = ref.score(shifted);
  close(s.kl.sum, 0, 1e-9, 'kl shifted');
  close(s.ce.sum, ref.crossEntropy().sum, 1e-6, 'ce invariant to a shift');
  const u = ref.score(f32([0, 0, 0, 0, 0, 0]));
  let expect = 0;
  for (const row of [[1, 2, 3], [-1, 0, 4]]) {
    const z = row.reduce((a, v) => a + Math.exp(v), 0);
    const p = row.map((v) => Math.exp(v) / z);
    expect += Math.log(3) + p.reduce((a, pv) => a + pv * Math.log(pv), 0);
  }
  assert.equal(u.kl.count, 2);
  close(u.kl.sum, expect, 1e-6, 'kl uniform');
});

test('mask alignment: [BOS a b BOS c] with BOS excluded -> KL at {1,2,4}, CE at t in {1,2}', () => {
  const BOS = 9;
  const tokens = Int32Array.from([BOS, 1, 2, BOS, 0]);
  const keep = keepMask(tokens, new Set([BOS]));
  assert.deepEqual([...keep], [0, 1, 1, 0, 1]);
  const V = 10;
  // Position p's logits put mass only where the test can tell positions apart.
  const clean = new Float32Array(5 * V);
  const other = new Float32Array(5 * V);
  for (let p = 0; p < 5; p++) other[p * V] = p + 1; // KL at p grows with p
  const ref = new CleanLogits(clean, tokens, keep, 1, 5, V);
  const s = ref.score(other);
  assert.equal(s.kl.count, 3);
  const klAt = (p: number) => {
    const a = p + 1;
    return Math.log((Math.exp(a) + V - 1) / V) - a / V; // KL(uniform || softmax([a, 0, ...]))
  };
  close(s.kl.sum, klAt(1) + klAt(2) + klAt(4), 1e-6, 'kl positions');
  assert.equal(s.ce.count, 2);
  // CE at t=1 predicts token 2 (id 2), at t=2 predicts the separator BOS (id 9): both non-zero ids.
  const ceAt = (p: number) => Math.log(Math.exp(p + 1) + V - 1);
  close(s.ce.sum, ceAt(1) + ceAt(2), 1e-5, 'ce positions');
});
