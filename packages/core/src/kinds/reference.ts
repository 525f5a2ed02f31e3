/**
 * Float64 reference of the training step of the SAELens coder kinds: ReLU + L1 ("standard"),
 * JumpReLU (straight-through threshold gradient with a rectangle kernel of width `bandwidth`,
 * step or tanh L0), BatchTopK (top floor(k·N) of the whole batch on decoder-norm-scaled
 * pre-activations, running threshold), TopK of the same values per row (`perRow`) and Matryoshka
 * over either (prefix reconstruction losses). Dense loops and hand-written gradients, slow and obvious on purpose: the CPU / CUDA
 * kernels of these kinds are checked against it, and it is checked against PyTorch autograd
 * of SAELens 6.18's formulas (scripts/make-kinds-fixtures.py; formulas in docs/saelens.md).
 *
 * Layouts (row-major): encW [M,D] (row = latent), encB [M], W_dec [M,D], b_dec [D], x [N,D].
 * x' = x - b_dec, h = x' encWᵀ + encB, n_i = ||W_dec[i]||, mse = mean_n Σ_d (out - x)².
 *
 * With `dead` (nonzero = dead latent): BatchTopK / TopK / Matryoshka add SAELens's AuxK
 * (topk_sae.py calculate_topk_aux_loss: residual = x − out detached, k_aux = D // 2,
 * scale = min(num_dead / k_aux, 1), k_aux = min(k_aux, num_dead), the top k_aux of h·n per row over
 * the dead latents, raw, decoded in full: auxCoefficient · scale · mean_n Σ_d (recon − residual)²),
 * JumpReLU its pre-activation loss (jumprelu_sae.py calculate_pre_act_loss:
 * preActCoefficient · mean_n Σ_i ReLU(θ_i − h_i)·dead_i·n_i). Both are `aux`, in the loss.
 */
import { ValueError } from '../errors.js';

/** applyBDecToInput (SAELens apply_b_dec_to_input, default true): x' = x - b_dec, else x' = x. */
export type KindSpec = { applyBDecToInput?: boolean; dead?: ArrayLike<number> } & (
  | { kind: 'relu'; l1Coefficient: number; /** p of ‖f ⊙ n‖_p (default 1) */ lpNorm?: number }
  | { kind: 'jumprelu'; bandwidth: number; sparsityLoss: 'step' | 'tanh'; l0Coefficient: number; tanhScale?: number; preActCoefficient?: number }
  | { kind: 'batchtopk'; k: number; thresholdLr: number; threshold: number; perRow?: boolean; auxCoefficient?: number }
  | { kind: 'matryoshka'; k: number; thresholdLr: number; threshold: number; widths: readonly number[]; perRow?: boolean; auxCoefficient?: number }
);

export interface KindParams {
  encW: Float64Array;
  encB: Float64Array;
  W_dec: Float64Array;
  b_dec: Float64Array;
  /** jumprelu: log of the per-latent threshold (the trained parameter, as in SAELens). */
  logThreshold?: Float64Array;
}

export interface KindStepReference {
  /** [N,M] latent activations f (for BatchTopK: the kept ReLU(h ⊙ n) values). */
  latents: Float64Array;
  saeOut: Float64Array;
  mse: number;
  /** L1 / L0 term, or the Matryoshka prefix losses. */
  sparsity: number;
  /** AuxK (batchtopk / topk / matryoshka) or JumpReLU's pre-act loss; 0 without dead latents. */
  aux: number;
  loss: number;
  grads: KindParams;
  /** batchtopk / matryoshka: the threshold after this step's update. */
  thresholdAfter?: number;
}

const rect = (z: number) => (z > -0.5 && z < 0.5 ? 1 : 0);

export function kindStepReference(p: KindParams, x: Float64Array, N: number, spec: KindSpec): KindStepReference {
  const M = p.encB.length, D = p.b_dec.length;
  if (p.encW.length !== M * D || p.W_dec.length !== M * D || x.length !== N * D) throw new ValueError('kindStepReference: inconsistent shapes');
  const xin = new Float64Array(N * D);
  const applyBDec = spec.applyBDecToInput ?? true;
  for (let i = 0; i < N * D; i++) xin[i] = applyBDec ? x[i] - p.b_dec[i % D] : x[i];
  const h = new Float64Array(N * M);
  for (let r = 0; r < N; r++)
    for (let m = 0; m < M; m++) {
      let s = p.encB[m];
      for (let d = 0; d < D; d++) s += xin[r * D + d] * p.encW[m * D + d];
      h[r * M + m] = s;
    }
  const norm = new Float64Array(M);
  for (let m = 0; m < M; m++) {
    let s = 0;
    for (let d = 0; d < D; d++) s += p.W_dec[m * D + d] ** 2;
    norm[m] = Math.sqrt(s);
  }
  const grads: KindParams = { encW: new Float64Array(M * D), encB: new Float64Array(M), W_dec: new Float64Array(M * D), b_dec: new Float64Array(D) };
  const gNorm = new Float64Array(M); // d loss / d n_i, turned into W_dec grads at the end
  const f = new Float64Array(N * M);
  // u: what multiplies W_dec in the decode (f, or f / n for BatchTopK).
  const u = new Float64Array(N * M);
  let sparsity = 0, aux = 0;
  let thresholdAfter: number | undefined;
  if (spec.kind === 'relu') for (let i = 0; i < N * M; i++) f[i] = u[i] = h[i] > 0 ? h[i] : 0;
  else if (spec.kind === 'jumprelu') {
    if (!p.logThreshold) throw new ValueError('kindStepReference: jumprelu needs logThreshold');
    for (let i = 0; i < N * M; i++) f[i] = u[i] = h[i] > Math.exp(p.logThreshold[i % M]) ? h[i] : 0;
  } else {
    const a = new Float64Array(N * M);
    for (let i = 0; i < N * M; i++) a[i] = Math.max(0, h[i] * norm[i % M]);
    // perRow (TopK): the top k of each row instead of the top floor(k N) of the batch.
    const kk = spec.perRow ? spec.k : Math.floor(spec.k * N);
    const groups = spec.perRow ? Array.from({ length: N }, (_, r) => Array.from({ length: M }, (_, m) => r * M + m)) : [Array.from({ length: N * M }, (_, i) => i)];
    const kept = groups.flatMap((g) => g.sort((i, j) => a[j] - a[i] || i - j).slice(0, kk));
    let minPos = Infinity;
    for (const i of kept) {
      f[i] = a[i];
      u[i] = a[i] / norm[i % M];
      if (a[i] > 0) minPos = Math.min(minPos, a[i]);
    }
    thresholdAfter = minPos === Infinity ? spec.threshold : (1 - spec.thresholdLr) * spec.threshold + spec.thresholdLr * minPos;
  }
  // Decode, mse and its gradient.
  const out = new Float64Array(N * D);
  const gU = new Float64Array(N * M);
  const decodeInto = (width: number, weight: number): number => {
    const o = new Float64Array(N * D);
    let loss = 0;
    for (let r = 0; r < N; r++) {
      for (let d = 0; d < D; d++) o[r * D + d] = p.b_dec[d];
      for (let m = 0; m < width; m++) {
        const v = u[r * M + m];
        if (v !== 0) for (let d = 0; d < D; d++) o[r * D + d] += v * p.W_dec[m * D + d];
      }
    }
    for (let r = 0; r < N; r++)
      for (let d = 0; d < D; d++) {
        const e = o[r * D + d] - x[r * D + d];
        loss += e * e;
        const ge = (2 * e * weight) / N;
        grads.b_dec[d] += ge;
        for (let m = 0; m < width; m++) {
          gU[r * M + m] += ge * p.W_dec[m * D + d];
          grads.W_dec[m * D + d] += ge * u[r * M + m];
        }
      }
    if (width === M) out.set(o);
    return (loss * weight) / N;
  };
  const mse = decodeInto(M, 1);
  if (spec.kind === 'matryoshka') for (const w of spec.widths) if (w < M) sparsity += decodeInto(w, 1);

  // Back to the pre-activations h.
  const gH = new Float64Array(N * M);
  if (spec.kind === 'relu') {
    // SAELens standard_sae.py: coeff · mean_n ‖f ⊙ n‖_p; d‖u‖_p/du_i = (u_i / ‖u‖_p)^(p−1) (0 where ‖u‖_p = 0).
    const c = spec.l1Coefficient / N, pn = spec.lpNorm ?? 1;
    for (let r = 0; r < N; r++) {
      let acc = 0;
      for (let m = 0; m < M; m++) acc += (f[r * M + m] * norm[m]) ** pn;
      const rn = acc ** (1 / pn);
      sparsity += c * rn;
      for (let m = 0; m < M; m++) {
        const i = r * M + m, u = f[i] * norm[m];
        const w = pn === 1 ? 1 : rn > 0 && u > 0 ? (u / rn) ** (pn - 1) : 0;
        gNorm[m] += c * w * f[i];
        if (h[i] > 0) gH[i] = gU[i] + c * w * norm[m];
      }
    }
  } else if (spec.kind === 'jumprelu') {
    const eps = spec.bandwidth, c = spec.l0Coefficient / N;
    const cp = spec.dead ? (spec.preActCoefficient ?? 0) : 0;
    const gTheta = new Float64Array(M);
    for (let i = 0; i < N * M; i++) {
      const m = i % M, theta = Math.exp(p.logThreshold![m]);
      let gf = gU[i];
      if (spec.sparsityLoss === 'step') {
        if (h[i] > theta) sparsity += c;
        gTheta[m] += -(1 / eps) * rect((h[i] - theta) / eps) * c;
      } else {
        const s = spec.tanhScale ?? 4;
        const t = Math.tanh(s * f[i] * norm[m]);
        sparsity += c * t;
        const dt = c * (1 - t * t) * s;
        gf += dt * norm[m];
        gNorm[m] += dt * f[i];
      }
      if (h[i] > theta) gH[i] = gf;
      gTheta[m] += -(theta / eps) * rect((h[i] - theta) / eps) * gf;
      // Pre-act loss: c_p ReLU(θ − h) dead n / N.
      if (cp > 0 && spec.dead![m] && theta > h[i]) {
        aux += (cp * (theta - h[i]) * norm[m]) / N;
        gH[i] += (-cp * norm[m]) / N;
        gTheta[m] += (cp * norm[m]) / N;
        gNorm[m] += (cp * (theta - h[i])) / N;
      }
    }
    grads.logThreshold = new Float64Array(M);
    for (let m = 0; m < M; m++) grads.logThreshold[m] = gTheta[m] * Math.exp(p.logThreshold![m]);
  } else {
    for (let i = 0; i < N * M; i++) {
      if (f[i] === 0) continue;
      const m = i % M;
      // u = f / n, f = ReLU(h n) on the kept set.
      const gf = gU[i] / norm[m];
      gNorm[m] += -gU[i] * f[i] / (norm[m] * norm[m]);
      gH[i] = gf * norm[m];
      gNorm[m] += gf * h[i];
    }
  }
  // AuxK, autograd-style: a = h n on the selected dead latents, u = a / n decoded with b_dec.
  const ca = spec.kind === 'batchtopk' || spec.kind === 'matryoshka' ? (spec.auxCoefficient ?? 0) : 0;
  const deadList = spec.dead ? Array.from({ length: M }, (_, m) => m).filter((m) => spec.dead![m]) : [];
  if (ca > 0 && deadList.length > 0) {
    if (D < 2) throw new ValueError('kindStepReference: AuxK needs d_in >= 2');
    const half = Math.floor(D / 2);
    const scale = Math.min(deadList.length / half, 1), ka = Math.min(half, deadList.length);
    for (let r = 0; r < N; r++) {
      const sel = [...deadList].sort((i, j) => h[r * M + j] * norm[j] - h[r * M + i] * norm[i] || i - j).slice(0, ka);
      const e = new Float64Array(D);
      for (let d = 0; d < D; d++) e[d] = p.b_dec[d] - (x[r * D + d] - out[r * D + d]);
      for (const m of sel) for (let d = 0; d < D; d++) e[d] += ((h[r * M + m] * norm[m]) / norm[m]) * p.W_dec[m * D + d];
      let q = 0;
      for (let d = 0; d < D; d++) q += e[d] * e[d];
      aux += (ca * scale * q) / N;
      const ge = e.map((v) => (2 * ca * scale * v) / N);
      for (let d = 0; d < D; d++) grads.b_dec[d] += ge[d];
      for (const m of sel) {
        const a = h[r * M + m] * norm[m], u = a / norm[m];
        let gu = 0;
        for (let d = 0; d < D; d++) {
          gu += ge[d] * p.W_dec[m * D + d];
          grads.W_dec[m * D + d] += ge[d] * u;
        }
        const ga = gu / norm[m];
        gNorm[m] += (-gu * a) / (norm[m] * norm[m]) + ga * h[r * M + m];
        gH[r * M + m] += ga * norm[m];
      }
    }
  }
  // Decoder norms, then the encoder and the b_dec of its input.
  // A decoder row of norm 0 gets no norm gradient (torch's norm backward masks it, as the kernels do).
  for (let m = 0; m < M; m++) if (gNorm[m] !== 0 && norm[m] > 0) for (let d = 0; d < D; d++) grads.W_dec[m * D + d] += (gNorm[m] * p.W_dec[m * D + d]) / norm[m];
  for (let r = 0; r < N; r++)
    for (let m = 0; m < M; m++) {
      const g = gH[r * M + m];
      if (g === 0) continue;
      grads.encB[m] += g;
      for (let d = 0; d < D; d++) {
        grads.encW[m * D + d] += g * xin[r * D + d];
        if (applyBDec) grads.b_dec[d] -= g * p.encW[m * D + d];
      }
    }
  return { latents: f, saeOut: out, mse, sparsity, aux, loss: mse + sparsity + aux, grads, ...(thresholdAfter !== undefined ? { thresholdAfter } : {}) };
}
