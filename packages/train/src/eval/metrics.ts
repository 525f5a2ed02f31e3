/**
 * The evaluation metrics as streaming float64 accumulators over batches: next-token cross-entropy
 * and KL from logits, reconstruction and sparsity from a coder's output and latents, and the
 * normalised scores. Definitions (SAELens `evals.py` / SAEBench "core", current conventions) are
 * in docs/eval.md; every value is a flat mean over the kept tokens of all batches.
 */

/** Which positions of a [rows, ctx] token batch count (false: an excluded token). */
export function keepMask(tokens: Int32Array, exclude: ReadonlySet<number>): Uint8Array {
  const keep = new Uint8Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) keep[i] = exclude.has(tokens[i]) ? 0 : 1;
  return keep;
}

/** log Σ exp(row) in float64. */
function logSumExp(l: Float32Array, off: number, V: number): number {
  let m = -Infinity;
  for (let v = 0; v < V; v++) if (l[off + v] > m) m = l[off + v];
  let s = 0;
  for (let v = 0; v < V; v++) s += Math.exp(l[off + v] - m);
  return m + Math.log(s);
}

/**
 * The clean logits of one batch, kept while its spliced/ablated variants are scored against them.
 * CE at position t predicts token t+1 (HF's labels=input_ids shift) and counts when the input
 * token t is kept; KL(p_clean || p_other) counts at every kept position, the last one included.
 */
export class CleanLogits {
  readonly lse: Float64Array;

  constructor(
    readonly logits: Float32Array,
    readonly tokens: Int32Array,
    readonly keep: Uint8Array,
    readonly rows: number,
    readonly ctx: number,
    readonly vocab: number,
  ) {
    if (logits.length !== rows * ctx * vocab) throw new RangeError(`logits have ${logits.length} values, expected ${rows}*${ctx}*${vocab}`);
    this.lse = new Float64Array(rows * ctx);
    for (let p = 0; p < rows * ctx; p++) this.lse[p] = logSumExp(logits, p * vocab, vocab);
  }

  /** Sum and count of the next-token cross-entropy of `logits` (default: the clean ones). */
  crossEntropy(logits: Float32Array = this.logits, lse?: Float64Array): { sum: number; count: number } {
    const { rows, ctx, vocab: V } = this;
    let sum = 0;
    let count = 0;
    for (let r = 0; r < rows; r++) {
      for (let t = 0; t + 1 < ctx; t++) {
        const p = r * ctx + t;
        if (!this.keep[p]) continue;
        const l = lse ? lse[p] : logSumExp(logits, p * V, V);
        sum += l - logits[p * V + this.tokens[p + 1]];
        count++;
      }
    }
    return { sum, count };
  }

  /** Sum and count of KL(p_clean || softmax(other)), and other's cross-entropy (one pass over the logits). */
  score(other: Float32Array): { ce: { sum: number; count: number }; kl: { sum: number; count: number } } {
    const { rows, ctx, vocab: V, logits: clean } = this;
    if (other.length !== clean.length) throw new RangeError(`logits have ${other.length} values, expected ${clean.length}`);
    const lseQ = new Float64Array(rows * ctx);
    let sum = 0;
    let count = 0;
    for (let p = 0; p < rows * ctx; p++) {
      const off = p * V;
      lseQ[p] = logSumExp(other, off, V);
      if (!this.keep[p]) continue;
      // KL = Σ p_v (l_v - q_v) - lse_p + lse_q: exact for any shift of either row.
      const lseP = this.lse[p];
      let d = 0;
      for (let v = 0; v < V; v++) d += Math.exp(clean[off + v] - lseP) * (clean[off + v] - other[off + v]);
      sum += d - lseP + lseQ[p];
      count++;
    }
    return { ce: this.crossEntropy(other, lseQ), kl: { sum, count } };
  }
}

/** A running mean (sum and count). */
export class Mean {
  sum = 0;
  count = 0;
  add(s: { sum: number; count: number }): void {
    this.sum += s.sum;
    this.count += s.count;
  }
  get value(): number {
    return this.count > 0 ? this.sum / this.count : NaN;
  }
}

/** (CE_zero - CE_spliced) / (CE_zero - CE_clean): 1 = as good as the clean model, 0 = as bad as zeroing the module. */
export function ceLossScore(clean: number, spliced: number, zero: number): number {
  return (zero - spliced) / (zero - clean);
}

/** (KL_zero - KL_spliced) / KL_zero. */
export function klDivScore(spliced: number, zero: number): number {
  return (zero - spliced) / zero;
}

/** Edges of the log10 firing-frequency histogram: -7, -6.5, ..., 0 (frequencies below 1e-7 go to the first bin). */
export const FIRING_HISTOGRAM_EDGES: readonly number[] = Array.from({ length: 15 }, (_, i) => -7 + 0.5 * i);

export interface FiringHistogram {
  log10_edges: number[];
  counts: number[];
}

export interface ReconstructionMetrics {
  fvu: number;
  explained_variance: number;
  mse: number;
  cosine_similarity: number;
  l2_ratio: number;
  l2_norm_in: number;
  l2_norm_out: number;
  relative_reconstruction_bias: number;
  l0: number;
  l1: number;
  dead_fraction: number;
  dense_fraction: number;
  firing_histogram: FiringHistogram;
}

/**
 * Reconstruction and sparsity of one coder over the kept tokens of every batch. The total
 * variance is centred on `mean` (the target's per-dimension mean over the evaluated tokens,
 * known from a first pass), so explained_variance = 1 - FVU is about the mean, not about zero.
 */
export class ReconstructionStats {
  n = 0;
  private sse = 0;
  private centred = 0;
  private cos = 0;
  private ratio = 0;
  private normIn = 0;
  private normOut = 0;
  private outSq = 0;
  private dot = 0;
  private l0 = 0;
  private l1 = 0;
  private readonly fired: Float64Array;

  constructor(
    readonly dIn: number,
    readonly numLatents: number,
    private readonly mean: Float64Array,
  ) {
    if (mean.length !== dIn) throw new RangeError(`mean has ${mean.length} entries, expected ${dIn}`);
    this.fired = new Float64Array(numLatents);
  }

  /**
   * y, yHat: [N, dIn] target and reconstruction; acts/indices: [N, kk] latent code; keep: [N].
   */
  add(y: Float32Array, yHat: Float32Array, acts: Float32Array, indices: Int32Array, keep: Uint8Array): void {
    const D = this.dIn;
    const N = keep.length;
    if (y.length !== N * D || yHat.length !== N * D) throw new RangeError(`reconstruction has ${yHat.length} values, expected ${N}*${D}`);
    const kk = acts.length / N;
    if (!Number.isInteger(kk) || indices.length !== acts.length) throw new RangeError('latent codes do not match the token count');
    for (let r = 0; r < N; r++) {
      if (!keep[r]) continue;
      let e = 0, c = 0, yy = 0, hh = 0, yh = 0;
      for (let d = 0; d < D; d++) {
        const a = y[r * D + d];
        const b = yHat[r * D + d];
        e += (b - a) * (b - a);
        c += (a - this.mean[d]) * (a - this.mean[d]);
        yy += a * a;
        hh += b * b;
        yh += a * b;
      }
      this.sse += e;
      this.centred += c;
      const ny = Math.sqrt(yy);
      const nh = Math.sqrt(hh);
      this.cos += ny > 0 && nh > 0 ? yh / (ny * nh) : 0;
      this.ratio += nh / (ny < 1e-4 ? 1 : ny);
      this.normIn += ny;
      this.normOut += nh;
      this.outSq += hh;
      this.dot += yh;
      for (let j = 0; j < kk; j++) {
        const v = acts[r * kk + j];
        if (v === 0) continue;
        this.l0++;
        this.l1 += Math.abs(v);
        this.fired[indices[r * kk + j]]++;
      }
      this.n++;
    }
  }

  result(): ReconstructionMetrics {
    const n = this.n;
    const fvu = this.sse / this.centred;
    const counts = FIRING_HISTOGRAM_EDGES.slice(1).map(() => 0);
    let dead = 0;
    let dense = 0;
    for (const c of this.fired) {
      const f = c / n;
      if (c === 0) {
        dead++;
        continue;
      }
      if (f > 0.1) dense++;
      const bin = Math.floor((Math.log10(f) - FIRING_HISTOGRAM_EDGES[0]) / 0.5);
      counts[Math.min(Math.max(bin, 0), counts.length - 1)]++;
    }
    return {
      fvu,
      explained_variance: 1 - fvu,
      mse: this.sse / n,
      cosine_similarity: this.cos / n,
      l2_ratio: this.ratio / n,
      l2_norm_in: this.normIn / n,
      l2_norm_out: this.normOut / n,
      relative_reconstruction_bias: this.outSq / this.dot,
      l0: this.l0 / n,
      l1: this.l1 / n,
      dead_fraction: dead / this.numLatents,
      dense_fraction: dense / this.numLatents,
      firing_histogram: { log10_edges: [...FIRING_HISTOGRAM_EDGES], counts },
    };
  }
}

/** Per-dimension sum of the kept rows of x [N, D], added into `sum` (float64). */
export function addKeptRows(sum: Float64Array, x: Float32Array, keep: Uint8Array): number {
  const D = sum.length;
  let n = 0;
  for (let r = 0; r < keep.length; r++) {
    if (!keep[r]) continue;
    for (let d = 0; d < D; d++) sum[d] += x[r * D + d];
    n++;
  }
  return n;
}
