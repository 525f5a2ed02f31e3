/**
 * Logit effects of latents: the vector W_dec[i] (through the final norm's linear part) · W_Uᵀ over
 * the vocabulary, and its top and bottom entries. The final norm's linear part is what
 * TransformerLens folds into W_U (`fold_ln`): for LayerNorm the direction is centred and scaled
 * by ln_f's gain; for RMSNorm scaled by the gain (Gemma: 1 + gain). Biases and the norm's division
 * by the residual's scale are left out (they do not depend on the latent). SAEDashboard's
 * `no_processing` path multiplies by the raw W_U instead; the ranking then differs by the gain.
 */
import { matmul, Tensor, type Unembedding } from '@sparsify/core';

export interface LogitEffects {
  pos: { token: number; value: number }[];
  neg: { token: number; value: number }[];
  /** Histogram of the whole vocabulary vector: `bins` equal-width bins over [min, max]. */
  histogram: { min: number; max: number; counts: number[] };
}

/** The decoder row mapped through the final norm's linear part (a copy). */
export function throughFinalNorm(row: Float32Array, u: Unembedding): Float32Array {
  const d = row.length;
  const out = new Float32Array(d);
  let mean = 0;
  if (u.normKind === 'layernorm') {
    for (let j = 0; j < d; j++) mean += row[j];
    mean /= d;
  }
  for (let j = 0; j < d; j++) {
    const g = u.normKind === 'rms1p' ? 1 + u.normWeight[j] : u.normWeight[j];
    out[j] = (row[j] - mean) * g;
  }
  return out;
}

/**
 * Logit effects of every latent of a decoder W_dec [M, D]; `rows` entries each side, ties by the
 * lower token id. Blocks of latents go through the native GEMM (off the event loop).
 */
export async function logitEffects(wDec: Float32Array, numLatents: number, u: Unembedding, rows = 10, bins = 50): Promise<LogitEffects[]> {
  const [V, D] = u.weight.shape;
  if (wDec.length !== numLatents * D) throw new RangeError(`logitEffects: W_dec has ${wDec.length} values, expected ${numLatents} x ${D}`);
  const out: LogitEffects[] = [];
  const block = Math.max(1, Math.min(numLatents, Math.floor((1 << 24) / V)));
  for (let lo = 0; lo < numLatents; lo += block) {
    const n = Math.min(block, numLatents - lo);
    const dirs = new Float32Array(n * D);
    for (let i = 0; i < n; i++) dirs.set(throughFinalNorm(wDec.subarray((lo + i) * D, (lo + i + 1) * D), u), i * D);
    const a = Tensor.from(dirs, [n, D]);
    const prod = await matmul(a, u.weight, { bTrans: true });
    a.dispose();
    const all = prod.toFloat32Array();
    prod.dispose();
    for (let i = 0; i < n; i++) out.push(summarize(all.subarray(i * V, (i + 1) * V), rows, bins));
  }
  return out;
}

/** Top/bottom entries and histogram of one vocabulary vector. */
export function summarize(v: Float32Array, rows: number, bins: number): LogitEffects {
  const r = Math.min(rows, v.length);
  const pos = extremes(v, r, 1).map((t) => ({ token: t, value: v[t] }));
  const neg = extremes(v, r, -1).map((t) => ({ token: t, value: v[t] }));
  let mn = Infinity, mx = -Infinity;
  for (const x of v) {
    if (x < mn) mn = x;
    if (x > mx) mx = x;
  }
  return { pos, neg, histogram: { min: mn, max: mx, counts: histogram(v, mn, mx, bins) } };
}

/** Counts in `bins` equal-width bins over [lo, hi] (the top edge in the last bin), as torch.histc. */
export function histogram(values: ArrayLike<number>, lo: number, hi: number, bins: number): number[] {
  const counts = new Array<number>(bins).fill(0);
  const w = hi - lo;
  for (let i = 0; i < values.length; i++) counts[binIndex(values[i], lo, w, bins)]++;
  return counts;
}

export function binIndex(x: number, lo: number, width: number, bins: number): number {
  if (!(width > 0)) return 0;
  return Math.max(0, Math.min(bins - 1, Math.floor(((x - lo) / width) * bins)));
}

/** Indices of the r largest (sign 1) or smallest (sign -1) entries, best first, ties by lower index. */
function extremes(v: Float32Array, r: number, sign: 1 | -1): number[] {
  const best: number[] = [];
  const better = (a: number, b: number) => sign * (v[a] - v[b]) > 0 || (v[a] === v[b] && a < b);
  for (let t = 0; t < v.length; t++) {
    if (best.length === r && !better(t, best[r - 1])) continue;
    let i = best.length === r ? r - 1 : best.length;
    if (best.length < r) best.push(t);
    while (i > 0 && better(t, best[i - 1])) {
      best[i] = best[i - 1];
      i--;
    }
    best[i] = t;
  }
  return best;
}
