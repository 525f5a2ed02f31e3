/**
 * The SAELens coder kinds inside a SparseCoder (activation 'relu' | 'jumprelu' | 'batchtopk',
 * Matryoshka over batchtopk): encode, forward and the training step, as free kernels
 * (ops/threshold.ts) over the tensors of the coder's state on its device (CoderState.kindTensors:
 * on cuda device views of the resident state, so a micro-step moves only the batch in and the
 * losses out). The steps write the state's fired marks, which its updateDeadLatents folds in. The
 * optimizers see the trained parameters (log_threshold included) like any other; BatchTopK's
 * running threshold is not trained and lives here (saved with the coder as `topk_threshold`).
 *
 * Math and sources (SAELens 6.18 standard_sae.py, jumprelu_sae.py, batchtopk_sae.py,
 * matryoshka_batchtopk_sae.py): docs/sae.md, "SAELens kinds".
 */
import type { CoderParamName } from '../coder-params.js';
import { isSaeLensKind, type SaeLensKind, type SparseCoderConfig } from '../config.js';
import { ValueError } from '../errors.js';
import { native } from '../native.js';
import { saeEncode } from '../ops/sae.js';
import { batchTopKStep, thresholdEncode, thresholdStep, type SparseLatents, type ThresholdStepTensors, type ThresholdWeights } from '../ops/threshold.js';
import { Tensor } from '../tensor.js';
import type { CoderState, ForwardResult, StepLosses } from './coder-state.js';

/**
 * The coders trained here: the SAELens kinds, and TopK with matryoshkaPrefixes (Matryoshka over
 * TopK: SAELens's TopK with rescale_acts_by_decoder_norm, the top k of h·n per row).
 */
export type KindName = SaeLensKind | 'topk';

export function kindOf(cfg: Pick<SparseCoderConfig, 'activation' | 'matryoshkaPrefixes'>): KindName | undefined {
  if (isSaeLensKind(cfg.activation)) return cfg.activation;
  return cfg.activation === 'topk' && cfg.matryoshkaPrefixes.length > 0 ? 'topk' : undefined;
}

/** The sparsity coefficients of one training call (after the trainer's warm-up). */
export interface KindCoefficients {
  /** relu: L1 coefficient (SAELens l1_coefficient, default 1). */
  l1Coefficient?: number;
  /** jumprelu: L0 coefficient (SAELens l0_coefficient, default 1). */
  l0Coefficient?: number;
  /** batchtopk, Matryoshka (over batchtopk or topk): AuxK weight (SAELens aux_loss_coefficient, default 1), over the dead latents. */
  auxLossCoefficient?: number;
  /** jumprelu: pre-activation loss weight (SAELens pre_act_loss_coefficient; default off), over the dead latents. */
  preActLossCoefficient?: number;
}

export interface KindStepCall extends KindCoefficients {
  y?: Tensor;
  lossScale: number;
  totalVariance?: number;
  didFire?: Tensor;
  trackFired?: boolean;
  rows?: [number, number];
  batchVariance?: boolean;
  auxkAlpha: number;
  /** Host dead mask (nonzero = dead) for AuxK / the pre-act loss; undefined: no latent is dead. */
  dead?: Int32Array;
}

/** Why `cfg` cannot make a coder of a SAELens kind with M latents on `device`, or undefined. */
export function kindProblem(cfg: SparseCoderConfig, M: number): string | undefined {
  for (const w of cfg.matryoshkaPrefixes) if (w > M) return `matryoshka_prefixes: ${w} is larger than num_latents=${M}`;
  return undefined;
}

/** Per-coder state of a SAELens kind that is not an optimizer parameter. */
export class KindState {
  /** batchtopk: the running inference threshold θ (in h·n units; kept in float32). */
  threshold = 0;

  constructor(
    readonly kind: KindName,
    readonly M: number,
  ) {}

  /** Takes `topk_threshold` out of `params` (batchtopk): it is state, not a trained parameter. */
  static fromParams(kind: KindName, M: number, params: Map<CoderParamName, Tensor>): KindState {
    const s = new KindState(kind, M);
    const t = params.get('topk_threshold');
    if (t) {
      const v = t.toFloat32Array()[0];
      if (!Number.isFinite(v) || v < 0) throw new ValueError(`topk_threshold must be a finite number >= 0, got ${v}`);
      s.threshold = v;
      t.dispose();
      params.delete('topk_threshold');
    }
    return s;
  }

  /** The tensors saved with the coder besides its parameters (batchtopk: topk_threshold [1]). */
  buffers(): Map<CoderParamName, Tensor> {
    return this.kind === 'batchtopk' ? new Map([['topk_threshold', Tensor.from(new Float32Array([this.threshold]), [1])]]) : new Map();
  }

  dispose(): void {}
}

function decoderNorms(W_dec: Float32Array, M: number, D: number): Float32Array {
  const n = new Float32Array(M);
  for (let m = 0; m < M; m++) {
    let q = 0;
    for (let d = 0; d < D; d++) q += W_dec[m * D + d] * W_dec[m * D + d];
    n[m] = Math.sqrt(q);
  }
  return n;
}

/**
 * The inference rule of each kind as threshold-encoder weights (the caller disposes the tensors
 * it made, listed in `owned`). batchtopk keeps h·n > θ, i.e. h > θ / n, with value h: the
 * decoder-norm-unscaled activation that W_dec decodes (the SAELens export folds n in).
 */
function inferenceWeights(kind: SaeLensKind, p: Map<CoderParamName, Tensor>, threshold: number): { w: ThresholdWeights; owned: Tensor[] } {
  const encW = p.get('encoder.weight')!, encB = p.get('encoder.bias')!;
  const base = { encW, gateBias: encB, valueBias: encB };
  if (kind === 'relu') return { w: base, owned: [] };
  const M = encB.shape[0];
  let th: Float32Array;
  if (kind === 'jumprelu') th = p.get('log_threshold')!.toFloat32Array().map(Math.exp);
  else {
    const n = decoderNorms(p.get('W_dec')!.toFloat32Array(), M, encW.shape[1]);
    th = new Float32Array(M);
    for (let m = 0; m < M; m++) th[m] = n[m] > 0 ? threshold / n[m] : Infinity;
  }
  const gateThreshold = Tensor.from(th, [M]);
  return { w: { ...base, gateThreshold }, owned: [gateThreshold] };
}

/**
 * Matryoshka TopK's inference: the top k of ReLU(h·n) per row (the fused TopK encoder over the
 * norm-folded encoder W_enc·n, b_enc·n), values divided back by n to h, which W_dec decodes.
 */
async function topkEncode(p: Map<CoderParamName, Tensor>, k: number, applyBDec: boolean, x: Tensor): Promise<SparseLatents> {
  const encW = p.get('encoder.weight')!, encB = p.get('encoder.bias')!;
  const [M, D] = encW.shape;
  const n = decoderNorms(p.get('W_dec')!.toFloat32Array(), M, D);
  const w = encW.toFloat32Array(), b = encB.toFloat32Array();
  for (let m = 0; m < M; m++) {
    b[m] *= n[m];
    for (let d = 0; d < D; d++) w[m * D + d] *= n[m];
  }
  const fw = Tensor.from(w, [M, D]), fb = Tensor.from(b, [M]);
  // The folded encoder runs on the host (a device batch is read back: inference only).
  const hx = x.device === 'cpu' ? x : await x.to('cpu');
  try {
    // transcode: the encoder input is x itself (apply_b_dec_to_input false).
    const r = await saeEncode({ encW: fw, encB: fb, b_dec: p.get('b_dec')! }, hx, { k, groupmax: false, transcode: !applyBDec, multiTopk: false }, false);
    const acts = r.acts.toFloat32Array(), idx = r.indices.toInt32Array();
    for (let i = 0; i < acts.length; i++) acts[i] = n[idx[i]] > 0 ? acts[i] / n[idx[i]] : 0;
    r.acts.dispose();
    const N = x.shape[0];
    return { topActs: Tensor.from(acts, [N, k]), topIndices: r.indices, counts: Tensor.from(new Int32Array(N).fill(k), [N], { dtype: 'int32' }) };
  } finally {
    fw.dispose();
    fb.dispose();
    if (hx !== x) hx.dispose();
  }
}

/** Variable-width sparse latents (ops/threshold.ts SparseLatents) of x, never N × M. */
export async function kindEncode(state: CoderState, cfg: SparseCoderConfig, ks: KindState, x: Tensor): Promise<SparseLatents> {
  const kind = ks.kind;
  await state.syncToHost(); // cuda: the parameters after the last optimizer step (nothing on cpu)
  const p = state.hostParams();
  if ((kind === 'topk' || kind === 'batchtopk') && !p.has('W_dec'))
    throw new ValueError(`encode: a ${kind === 'topk' ? 'Matryoshka TopK' : 'batchtopk'} coder selects by h·||W_dec[i]||, so it needs its decoder (loaded with decoder: false)`);
  if (kind === 'topk') return topkEncode(p, cfg.k, cfg.applyBDecToInput, x);
  const { w, owned } = inferenceWeights(kind, p, ks.threshold);
  try {
    return await thresholdEncode(w, x, cfg.applyBDecToInput ? p.get('b_dec')! : undefined);
  } finally {
    for (const t of owned) t.dispose();
  }
}

/** Σ (y − out)² / (totalVariance ?? Σ (y − mean_0 y)²), in float64. */
function fvuOf(y: Float32Array, out: Float32Array, N: number, D: number, totalVariance?: number): number {
  let se = 0;
  for (let i = 0; i < y.length; i++) se += (y[i] - out[i]) ** 2;
  if (totalVariance !== undefined) return se / totalVariance;
  const mean = new Float64Array(D);
  for (let i = 0; i < y.length; i++) mean[i % D] += y[i];
  for (let d = 0; d < D; d++) mean[d] /= N;
  let tv = 0;
  for (let i = 0; i < y.length; i++) tv += (y[i] - mean[i % D]) ** 2;
  return se / tv;
}

export async function kindForward(state: CoderState, cfg: SparseCoderConfig, ks: KindState, x: Tensor, opts: { y?: Tensor; totalVariance?: number }): Promise<ForwardResult & { counts: Tensor }> {
  const enc = await kindEncode(state, cfg, ks, x);
  const saeOut = await state.decode(enc.topActs, enc.topIndices);
  const [N, D] = x.shape;
  const y = opts.y ?? x;
  const hy = y.device === 'cpu' ? y : await y.to('cpu');
  const hout = saeOut.device === 'cpu' ? saeOut : await saeOut.to('cpu');
  const fvu = fvuOf(hy.toFloat32Array(), hout.toFloat32Array(), N, D, opts.totalVariance);
  if (hy !== y) hy.dispose();
  if (hout !== saeOut) hout.dispose();
  return { saeOut, latentActs: enc.topActs, latentIndices: enc.topIndices, counts: enc.counts, fvu, auxkLoss: 0, multiTopkFvu: 0 };
}

function stepTensors(t: Map<CoderParamName, Tensor>): ThresholdStepTensors {
  return { encW: t.get('encoder.weight')!, encB: t.get('encoder.bias')!, logThreshold: t.get('log_threshold'), W_dec: t.get('W_dec')!, b_dec: t.get('b_dec')! };
}

/**
 * One training forward + backward of a SAELens kind, gradients ADDED (times lossScale) into the
 * state's gradient buffers; batchtopk then moves its running threshold (SAELens's rule).
 * Returned: loss = SAELens's loss (mse + sparsity term, or + Matryoshka prefix losses, + AuxK /
 * the pre-act loss over `call.dead`), fvu = the reconstruction's FVU, auxkLoss = the L1 / L0 term
 * (relu, jumprelu) or AuxK (batchtopk, Matryoshka), multiTopkFvu = the prefix MSE sum,
 * preActLoss = JumpReLU's pre-act loss.
 */
export async function kindForwardBackward(state: CoderState, cfg: SparseCoderConfig, ks: KindState, x: Tensor, call: KindStepCall): Promise<StepLosses> {
  const kind = ks.kind;
  if (call.auxkAlpha > 0)
    throw new ValueError(`forwardBackward: auxkAlpha (sparsify's AuxK) is for TopK coders; ${kind === 'topk' ? 'Matryoshka TopK' : `activation "${kind}"`} takes SAELens's auxLossCoefficient (aux_loss_coefficient), so pass auxkAlpha 0`);
  if (call.y !== undefined && call.y !== x) throw new ValueError(`forwardBackward: activation "${kind}" trains autoencoders only (no y / transcode)`);
  if (call.trackFired && call.didFire) throw new ValueError('forwardBackward: pass didFire or trackFired, not both');
  if (!state.hasDecoder) throw new ValueError('forwardBackward: this coder has no decoder (loaded with decoder: false)');
  const coef = (v: number | undefined, name: string) => {
    const c = v ?? 1;
    if (typeof c !== 'number' || !Number.isFinite(c) || c < 0) throw new ValueError(`forwardBackward: ${name} must be a finite number >= 0, got ${v}`);
    return c;
  };
  const xr = call.rows ? new Tensor(native().trainRowSlice(x.handle, call.rows[0], call.rows[1])) : x;
  const N = xr.shape[0];
  // The normaliser first, where the batch is (the kernels report the MSE).
  let tv = call.totalVariance;
  if (tv === undefined) {
    tv = call.batchVariance && call.rows
      ? ((await totalVariance(x)) * N) / x.shape[0]
      : await totalVariance(xr);
  }
  const kt = await state.kindTensors();
  const w = stepTensors(kt.params), g = stepTensors(kt.grads);
  const didFire = call.trackFired ? kt.fired : call.didFire;
  // The kernels run where the batch is: a cuda state's batch goes to the device (once per micro-step).
  const xs = state.device === 'cuda' && xr.device !== 'cuda' ? await xr.to('cuda') : xr;
  // The dead mask goes to the kernels only when its term is on (AuxK, JumpReLU's pre-act loss).
  const deadCoef = kind === 'jumprelu' ? coef(call.preActLossCoefficient ?? 0, 'preActLossCoefficient') : kind === 'relu' ? 0 : coef(call.auxLossCoefficient, 'auxLossCoefficient');
  if (call.dead && call.dead.length !== ks.M) throw new ValueError(`forwardBackward: the dead mask has ${call.dead.length} entries, the coder has ${ks.M} latents`);
  const dead = deadCoef > 0 && call.dead?.some((v) => v !== 0) ? Tensor.from(call.dead, [ks.M], { dtype: 'int32' }) : undefined;
  try {
    return await kindStep(kind, cfg, ks, w, g, xs, didFire, call, coef, (mse) => (mse * N) / tv, deadCoef, dead);
  } finally {
    if (xs !== xr) xs.dispose();
    dead?.dispose();
  }
}

/** Σ (y − mean_0 y)² of a batch, where it is (a device batch: native/cuda/sae_state.cu, one scalar back). */
async function totalVariance(y: Tensor): Promise<number> {
  return y.device === 'cpu' ? native().trainTotalVariance(y.handle) : native().cudaTotalVariance(y.handle);
}

/** The step kernel of `kind` on a batch already where it runs, and the losses it reports. */
async function kindStep(
  kind: KindName,
  cfg: SparseCoderConfig,
  ks: KindState,
  w: ThresholdStepTensors,
  g: ThresholdStepTensors,
  xr: Tensor,
  didFire: Tensor | undefined,
  call: KindStepCall,
  coef: (v: number | undefined, name: string) => number,
  fvuOfMse: (mse: number) => number,
  deadCoef: number,
  dead: Tensor | undefined,
): Promise<StepLosses> {
  let mse: number, sparsity: number, loss: number, aux: number;
  if (kind === 'batchtopk' && !(Math.floor(cfg.k * xr.shape[0]) >= 1))
    throw new ValueError(`forwardBackward: batchtopk keeps floor(k · rows) = floor(${cfg.k} · ${xr.shape[0]}) = 0 latents of this batch; use a larger k or more rows per step`);
  if (kind === 'batchtopk' || kind === 'topk') {
    const r = await batchTopKStep(w, g, xr, {
      k: cfg.k, widths: cfg.matryoshkaPrefixes, lossScale: call.lossScale, didFire, perRow: kind === 'topk', applyBDecToInput: cfg.applyBDecToInput,
      ...(dead ? { dead, auxCoefficient: deadCoef } : {}),
    });
    if (kind === 'batchtopk' && r.kept > 0) ks.threshold = Math.fround((1 - cfg.topkThresholdLr) * ks.threshold + cfg.topkThresholdLr * r.minKept);
    mse = r.mse;
    sparsity = r.inner;
    aux = r.aux;
    loss = r.loss;
  } else {
    const r = await thresholdStep(w, g, xr, {
      kind,
      l1Coefficient: kind === 'relu' ? coef(call.l1Coefficient, 'l1Coefficient') : 0,
      lpNorm: kind === 'relu' ? cfg.lpNorm : 1,
      l0Coefficient: kind === 'jumprelu' ? coef(call.l0Coefficient, 'l0Coefficient') : 0,
      bandwidth: cfg.jumpreluBandwidth,
      sparsityLoss: cfg.jumpreluSparsityLossMode,
      tanhScale: cfg.jumpreluTanhScale,
      lossScale: call.lossScale,
      didFire,
      applyBDecToInput: cfg.applyBDecToInput,
      ...(dead && kind === 'jumprelu' ? { dead, preActCoefficient: deadCoef } : {}),
    });
    mse = r.mse;
    sparsity = r.sparsity;
    aux = r.preAct;
    loss = r.loss;
  }
  const fvu = fvuOfMse(mse);
  return kind === 'batchtopk' || kind === 'topk'
    ? { loss, fvu, auxkLoss: aux, multiTopkFvu: sparsity }
    : { loss, fvu, auxkLoss: sparsity, multiTopkFvu: 0, ...(kind === 'jumprelu' && deadCoef > 0 ? { preActLoss: aux } : {}) };
}

/**
 * Initial parameters of a SAELens kind from the encoder rows `enc` [M,D] (sparsify's seeded
 * init): SAELens 6.18 starts W_dec rows at norm decoder_init_norm (0.1) and W_enc = W_decᵀ
 * (sae.py initialize_weights), log_threshold = log(jumprelu_init_threshold), θ = 0.
 */
export function kindInitialDecoder(enc: Float32Array, M: number, D: number): Float32Array {
  const out = new Float32Array(M * D);
  for (let m = 0; m < M; m++) {
    let q = 0;
    for (let d = 0; d < D; d++) q += enc[m * D + d] ** 2;
    const s = q > 0 ? 0.1 / Math.sqrt(q) : 0;
    for (let d = 0; d < D; d++) out[m * D + d] = enc[m * D + d] * s;
  }
  return out;
}
