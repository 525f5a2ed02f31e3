/**
 * Typed wrappers over the threshold encoder (native/bindings/cpu/threshold_encode.cpp): ReLU,
 * JumpReLU and gated latents, whose rows have a variable number of non-zeros.
 */
import { native } from '../native.js';
import { Tensor } from '../tensor.js';

/**
 * Per-latent rule, g = x' W_enc[m]^T: latent m is kept when g + gateBias[m] > gateThreshold[m]
 * (0 when absent) and v = g * valueScale[m] (1 when absent) + valueBias[m] > 0; its value is v.
 */
export interface ThresholdWeights {
  encW: Tensor;
  gateBias: Tensor;
  gateThreshold?: Tensor;
  valueScale?: Tensor;
  valueBias: Tensor;
}

/**
 * Latents with a variable number of non-zeros per row, padded to the widest row: slot j of row n
 * is a kept latent when j < counts[n] (in latent order); the padding slots hold value 0 at index
 * 0, so `decode(topActs, topIndices)` and everything that reads TopK latents accept it as is.
 */
export interface SparseLatents {
  topActs: Tensor;
  /** int32 */
  topIndices: Tensor;
  /** int32 [N]: non-zeros of each row. */
  counts: Tensor;
}

function handles(w: ThresholdWeights): Record<string, unknown> {
  return {
    encW: w.encW.handle,
    gateBias: w.gateBias.handle,
    gateThreshold: w.gateThreshold?.handle,
    valueScale: w.valueScale?.handle,
    valueBias: w.valueBias.handle,
  };
}

/**
 * Fused encode (never materialises N x M); the input is x - bDec when bDec is given. Runs where
 * x is: the CUDA kernel (native/cuda/threshold_encode.cu) for a cuda x, results on the device.
 */
export async function thresholdEncode(w: ThresholdWeights, x: Tensor, bDec?: Tensor): Promise<SparseLatents> {
  const n = native();
  const encode = x.device === 'cuda' ? n.cudaThresholdEncode : n.thresholdEncode;
  const r = await encode(handles(w), x.handle, bDec?.handle);
  return { topActs: new Tensor(r.acts), topIndices: new Tensor(r.indices), counts: new Tensor(r.counts) };
}

/** Float64 reference: the dense [N, M] activations (row-major). */
export function thresholdEncodeReference(w: ThresholdWeights, x: Tensor, bDec?: Tensor): Float64Array {
  return native().thresholdEncodeReference(handles(w), x.handle, bDec?.handle) as Float64Array;
}

/** Parameters (or gradient buffers) of a threshold coder in training (float32). */
export interface ThresholdStepTensors {
  encW: Tensor;
  encB: Tensor;
  /** jumprelu: log of the per-latent threshold. */
  logThreshold?: Tensor;
  W_dec: Tensor;
  b_dec: Tensor;
}

export interface ThresholdStepOptions {
  kind: 'relu' | 'jumprelu';
  /** relu: L1 coefficient (the penalty is scaled by the decoder row norms). */
  l1Coefficient?: number;
  /** relu: p of the penalty ‖f ⊙ n‖_p per row (SAELens lp_norm; default 1: Σ f_i n_i), finite and >= 1. */
  lpNorm?: number;
  /** jumprelu: L0 coefficient. */
  l0Coefficient?: number;
  /** jumprelu: width of the rectangle kernel of the threshold gradient (SAELens jumprelu_bandwidth). */
  bandwidth?: number;
  sparsityLoss?: 'step' | 'tanh';
  tanhScale?: number;
  /** Gradients added are lossScale * d(loss). */
  lossScale?: number;
  /** int32 [M]: set to 1 for each latent with a positive activation in this batch. */
  didFire?: Tensor;
  /** SAELens apply_b_dec_to_input (default true): encode x - b_dec, else x. */
  applyBDecToInput?: boolean;
  /** jumprelu: SAELens pre_act_loss_coefficient (0 = off): c mean_n Σ_i ReLU(θ_i − h_i)·dead_i·‖W_dec[i]‖. */
  preActCoefficient?: number;
  /** int32 [M] host tensor, nonzero = dead latent (the pre-act loss's mask). */
  dead?: Tensor;
}

const stepHandles = (t: ThresholdStepTensors) => ({ encW: t.encW.handle, encB: t.encB.handle, logThreshold: t.logThreshold?.handle, W_dec: t.W_dec.handle, b_dec: t.b_dec.handle });

/**
 * One training forward + backward of a ReLU + L1 or JumpReLU coder (native/cpu/threshold_step.cpp;
 * float64 reference: kinds/reference.ts). Adds the gradients into `grads`. Runs where x is: a
 * cuda x runs native/cuda/threshold_step.cu (the other tensors may be on either device).
 */
export async function thresholdStep(
  w: ThresholdStepTensors,
  grads: ThresholdStepTensors,
  x: Tensor,
  opts: ThresholdStepOptions,
): Promise<{ mse: number; sparsity: number; preAct: number; loss: number }> {
  const step = x.device === 'cuda' ? native().cudaThresholdStep : native().thresholdStep;
  return step(stepHandles(w), stepHandles(grads), x.handle, { ...opts, didFire: opts.didFire?.handle, dead: opts.dead?.handle });
}

export interface BatchTopKStepOptions {
  /** Average latents per row: floor(k · rows) are kept over the whole batch. */
  k: number;
  /** Matryoshka prefix widths; a last width equal to num_latents is the full decode (dropped). */
  widths?: readonly number[];
  lossScale?: number;
  /** int32 [M]: set to 1 for each latent with a positive kept activation. */
  didFire?: Tensor;
  /** TopK instead: the top k (an integer) of each row. */
  perRow?: boolean;
  /** SAELens apply_b_dec_to_input (default true). */
  applyBDecToInput?: boolean;
  /** AuxK weight (SAELens aux_loss_coefficient; 0 = off), over the latents marked in `dead`. */
  auxCoefficient?: number;
  /** int32 [M] host tensor, nonzero = dead latent (AuxK's mask). */
  dead?: Tensor;
}

/**
 * One training forward + backward of a BatchTopK (or Matryoshka BatchTopK) coder
 * (native/cpu/batchtopk_step.cpp; float64 reference: kinds/reference.ts). Adds the gradients into
 * `grads`. `minKept` is what SAELens's threshold update reads: θ ← (1 − lr)θ + lr·minKept.
 * With `dead` and auxCoefficient: SAELens's AuxK (`aux`, in `loss`; batchtopk_step.h).
 * A cuda x runs native/cuda/batchtopk_step.cu (radix select over the whole batch).
 */
export async function batchTopKStep(
  w: ThresholdStepTensors,
  grads: ThresholdStepTensors,
  x: Tensor,
  opts: BatchTopKStepOptions,
): Promise<{ mse: number; inner: number; aux: number; loss: number; minKept: number; kept: number }> {
  const M = w.encB.shape[0];
  const widths = (opts.widths ?? []).filter((v, i, a) => !(i === a.length - 1 && v === M));
  const step = x.device === 'cuda' ? native().cudaBatchTopKStep : native().batchTopKStep;
  return step(stepHandles(w), stepHandles(grads), x.handle, {
    k: opts.k, widths, lossScale: opts.lossScale, didFire: opts.didFire?.handle, perRow: opts.perRow, applyBDecToInput: opts.applyBDecToInput,
    auxCoefficient: opts.auxCoefficient, dead: opts.dead?.handle,
  });
}
