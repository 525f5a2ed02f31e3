/**
 * Plain float64 references of the CUDA kernels, written from EleutherAI sparsify's sparse_coder.py, trainer.py and optimizers
 * and the torch definitions they mirror. Inputs that the GPU rounds to bf16/f16 are rounded the
 * same way here first (through Tensor's own conversion), so the references differ from the
 * kernels only by f32 accumulation order.
 */
import { mulberry32, Tensor, type DType } from '@sparsify/core';

/** Deterministic PRNG; the seed is printed by the tests so failures reproduce. */
export const rng = mulberry32;

export function randn(n: number, r: () => number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12), v = r();
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return out;
}

/** Values rounded to a 16-bit float dtype (round-to-nearest-even), back as f32. */
export function roundTo(a: Float32Array, dtype: DType): Float32Array {
  if (dtype === 'float32') return a;
  const t = Tensor.from(a, [a.length], { dtype });
  const r = t.toFloat32Array();
  t.dispose();
  return r;
}

/** C[M,N] = A[M,K] · B[N,K]ᵀ (+ bias) in float64. */
export function matmulNT(A: ArrayLike<number>, B: ArrayLike<number>, M: number, N: number, K: number, bias?: ArrayLike<number>) {
  const C = new Float64Array(M * N);
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      let s = bias ? bias[j] : 0;
      for (let k = 0; k < K; k++) s += A[i * K + k] * B[j * K + k];
      C[i * N + j] = s;
    }
  return C;
}

/** relu((x - b_dec) · Wᵀ + b) with x - b_dec rounded once to `dtype` (as the kernel and autocast do). */
export function preActs(x: Float32Array, bDec: Float32Array | undefined, W: Float32Array, b: Float32Array, N: number, D: number, M: number, dtype: DType) {
  const xin = new Float32Array(N * D);
  for (let n = 0; n < N; n++) for (let d = 0; d < D; d++) xin[n * D + d] = x[n * D + d] - (bDec ? bDec[d] : 0);
  const pre = matmulNT(roundTo(xin, dtype), roundTo(W, dtype), N, M, D, b);
  for (let i = 0; i < pre.length; i++) pre[i] = Math.max(pre[i], 0);
  return pre;
}

/** Per-row top-k of `vals` restricted to `allowed` columns, sorted by (value desc, index asc). */
export function topkRows(vals: Float64Array, N: number, M: number, k: number, allowed?: (m: number) => boolean) {
  const v = new Float64Array(N * k), idx = new Int32Array(N * k);
  for (let n = 0; n < N; n++) {
    const cols: number[] = [];
    for (let m = 0; m < M; m++) if (!allowed || allowed(m)) cols.push(m);
    cols.sort((a, b) => vals[n * M + b] - vals[n * M + a] || a - b);
    for (let j = 0; j < k; j++) {
      v[n * k + j] = vals[n * M + cols[j]];
      idx[n * k + j] = cols[j];
    }
  }
  return { v, idx };
}

/** GroupMax: groups of G = M/k consecutive latents, max per group, ties -> lower index. */
export function groupMaxRows(vals: Float64Array, N: number, M: number, k: number) {
  const G = M / k, v = new Float64Array(N * k), idx = new Int32Array(N * k);
  for (let n = 0; n < N; n++)
    for (let g = 0; g < k; g++) {
      let best = -Infinity, bi = -1;
      for (let m = g * G; m < (g + 1) * G; m++) if (vals[n * M + m] > best) { best = vals[n * M + m]; bi = m; }
      v[n * k + g] = best;
      idx[n * k + g] = bi;
    }
  return { v, idx };
}

/** out[n] = Σ_j acts[n,j] W[idx[n,j]] (+ b). */
export function decodeRef(acts: ArrayLike<number>, idx: ArrayLike<number>, W: ArrayLike<number>, N: number, k: number, D: number, b?: ArrayLike<number>) {
  const out = new Float64Array(N * D);
  for (let n = 0; n < N; n++)
    for (let d = 0; d < D; d++) {
      let s = b ? b[d] : 0;
      for (let j = 0; j < k; j++) s += acts[n * k + j] * W[idx[n * k + j] * D + d];
      out[n * D + d] = s;
    }
  return out;
}

/** Σ over slots with idx = m of w[slot] · R[row(slot)], and Σ w. */
export function scatterRows(w: ArrayLike<number>, idx: ArrayLike<number>, R: ArrayLike<number>, N: number, k: number, M: number, D: number) {
  const out = new Float64Array(M * D), sums = new Float64Array(M);
  for (let n = 0; n < N; n++)
    for (let j = 0; j < k; j++) {
      const m = idx[n * k + j], g = w[n * k + j];
      sums[m] += g;
      for (let d = 0; d < D; d++) out[m * D + d] += g * R[n * D + d];
    }
  return { out, sums };
}

/** torch.lerp's formula, evaluated in float64. */
export function lerp(a: number, b: number, w: number): number {
  return Math.abs(w) < 0.5 ? a + w * (b - a) : b - (b - a) * (1 - w);
}

/** Max |a - b| / (atol + rtol·|b|) over all elements; <= 1 passes. NaN fails. */
export function worst(a: ArrayLike<number>, b: ArrayLike<number>, rtol: number, atol: number): { ratio: number; at: number } {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let ratio = 0, at = -1;
  for (let i = 0; i < a.length; i++) {
    const r = Math.abs(a[i] - b[i]) / (atol + rtol * Math.abs(b[i]));
    if (!(r <= ratio)) { ratio = Number.isNaN(r) ? Infinity : r; at = i; }
  }
  return { ratio, at };
}

/** ‖a − b‖ / ‖b‖ */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

export interface SaeParams64 { wEnc: Float64Array; bEnc: Float64Array; wDec: Float64Array; bDec: Float64Array }

/**
 * float64 forward + gradients of (fvu + alpha·auxk) for a TopK SAE (not a transcoder), with
 * sparsify's semantics: W_dec renormalised first, x_in = x − b_dec rounded once to `dtype` for the
 * encoder GEMM, FusedEncoder backward (no ReLU mask; b_dec also through x − b_dec), AuxK with
 * e detached and the aux values constant (trains W_dec only; with auxkIncludesBDec, sparsify HEAD's
 * e_hat + b_dec (#132), also b_dec).
 */
/**
 * extra.wSkip [D, D]: skip_connection (sae_out += x·W_skipᵀ, the raw x; its gradient is g.wSkip);
 * extra.multiTopk: the 4k selection, multi_topk_fvu and its loss/8 gradient into W_dec and b_dec
 * (as the CPU saeStep: the encoder gets none from it).
 */
export function referenceSaeStep(p: SaeParams64, x: Float32Array, N: number, D: number, M: number, k: number, dead: Int32Array | undefined, alpha: number, dtype: DType = 'bfloat16', auxkIncludesBDec = false,
  extra: { wSkip?: Float64Array; multiTopk?: boolean } = {}) {
  const eps = 1.1920928955078125e-7;
  const wDec = Float64Array.from(p.wDec);
  for (let m = 0; m < M; m++) {  // normalize_decoder: every forward
    let ss = 0;
    for (let d = 0; d < D; d++) ss += wDec[m * D + d] ** 2;
    for (let d = 0; d < D; d++) wDec[m * D + d] /= Math.sqrt(ss) + eps;
  }
  const bDec32 = Float32Array.from(p.bDec), xin = new Float64Array(N * D);
  for (let i = 0; i < N * D; i++) xin[i] = Math.fround(x[i] - bDec32[i % D]);
  const pre = preActs(x, bDec32, Float32Array.from(p.wEnc), Float32Array.from(p.bEnc), N, D, M, dtype);
  const top = topkRows(pre, N, M, k);
  const out = new Float64Array(N * D), e = new Float64Array(N * D), mean = new Float64Array(D);
  for (let n = 0; n < N; n++)
    for (let d = 0; d < D; d++) {
      let s = p.bDec[d];
      for (let j = 0; j < k; j++) s += top.v[n * k + j] * wDec[top.idx[n * k + j] * D + d];
      if (extra.wSkip) for (let c = 0; c < D; c++) s += x[n * D + c] * extra.wSkip[d * D + c];
      out[n * D + d] = s;
      e[n * D + d] = x[n * D + d] - s;
      mean[d] += x[n * D + d] / N;
    }
  let tv = 0, sse = 0;
  for (let i = 0; i < N * D; i++) { tv += (x[i] - mean[i % D]) ** 2; sse += e[i] ** 2; }
  const g = { wEnc: new Float64Array(M * D), bEnc: new Float64Array(M), wDec: new Float64Array(M * D), bDec: new Float64Array(D) };
  const G = e.map((v) => (-2 * v) / tv);
  for (let n = 0; n < N; n++)
    for (let j = 0; j < k; j++) {
      const m = top.idx[n * k + j], a = top.v[n * k + j];
      let ga = 0;
      for (let d = 0; d < D; d++) { ga += G[n * D + d] * wDec[m * D + d]; g.wDec[m * D + d] += a * G[n * D + d]; }
      g.bEnc[m] += ga;
      for (let d = 0; d < D; d++) { g.wEnc[m * D + d] += ga * xin[n * D + d]; g.bDec[d] -= ga * p.wEnc[m * D + d]; }
    }
  for (let i = 0; i < N * D; i++) g.bDec[i % D] += G[i];
  let wSkipGrad: Float64Array | undefined;
  if (extra.wSkip) {
    wSkipGrad = new Float64Array(D * D);
    for (let n = 0; n < N; n++)
      for (let d = 0; d < D; d++) for (let c = 0; c < D; c++) wSkipGrad[d * D + c] += G[n * D + d] * x[n * D + c];
  }
  let multiTopkFvu = 0;
  let idx4: Int32Array | undefined;
  if (extra.multiTopk) {
    const k4 = 4 * k, top4 = topkRows(pre, N, M, k4);
    idx4 = top4.idx;
    const r4 = new Float64Array(N * D);
    for (let n = 0; n < N; n++)
      for (let d = 0; d < D; d++) {
        let s = p.bDec[d];
        for (let j = 0; j < k4; j++) s += top4.v[n * k4 + j] * wDec[top4.idx[n * k4 + j] * D + d];
        r4[n * D + d] = s - x[n * D + d];
      }
    let ss = 0;
    for (const v of r4) ss += v * v;
    multiTopkFvu = ss / tv;
    for (let n = 0; n < N; n++)
      for (let d = 0; d < D; d++) {
        const gm = (2 * r4[n * D + d]) / (8 * tv);
        g.bDec[d] += gm;
        for (let j = 0; j < k4; j++) g.wDec[top4.idx[n * k4 + j] * D + d] += top4.v[n * k4 + j] * gm;
      }
  }
  let auxk = 0;
  const numDead = dead ? dead.reduce((a, v) => a + (v ? 1 : 0), 0) : 0;
  if (dead && numDead > 0 && alpha > 0) {
    const kAux = Math.min(Math.floor(D / 2), numDead), scale = Math.min(numDead / Math.floor(D / 2), 1);
    const aux = topkRows(pre, N, M, kAux, (m) => dead[m] !== 0);
    const r = new Float64Array(N * D);
    for (let n = 0; n < N; n++)
      for (let d = 0; d < D; d++) {
        let s = auxkIncludesBDec ? p.bDec[d] : 0;
        for (let j = 0; j < kAux; j++) s += aux.v[n * kAux + j] * wDec[aux.idx[n * kAux + j] * D + d];
        r[n * D + d] = s - e[n * D + d];
      }
    let ss = 0;
    for (const v of r) ss += v * v;
    auxk = (scale * ss) / tv;
    for (let n = 0; n < N; n++)
      for (let d = 0; d < D; d++) {
        const ga = (2 * scale * alpha * r[n * D + d]) / tv;
        if (auxkIncludesBDec) g.bDec[d] += ga;
        for (let j = 0; j < kAux; j++) g.wDec[aux.idx[n * kAux + j] * D + d] += aux.v[n * kAux + j] * ga;
      }
  }
  return { fvu: sse / tv, auxk, multiTopkFvu, idx: top.idx, idx4, g, wSkipGrad, wDecNormalized: wDec };
}

