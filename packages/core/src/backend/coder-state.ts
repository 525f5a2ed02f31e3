/**
 * The one interface between a SparseCoder (and its optimizer) and the device it lives on.
 *
 * A CoderState is the resident state of one coder on its device: parameters, gradient
 * accumulators, optimizer moments, the latents its steps selected and sparsify's dead-latent
 * counters. A training micro-step is one `forwardBackward` call and an optimizer step one
 * `optimizerStep` call, whatever the device. Both implementations are thin wrappers over one
 * native state object: `cpu-coder-state.ts` over `CpuSaeState` (native/cpu/sae_state.cpp),
 * `cuda-coder-state.ts` over the CUDA build's state (native/cuda/sae_state.cu). The device is
 * chosen once, in `createCoderState`.
 */
import type { CoderParamName } from '../coder-params.js';
import type { ComputeDType } from '../compute-dtype.js';
import type { Activation, SparseCoderConfig } from '../config.js';
import type { Device, Tensor } from '../tensor.js';

/** The settings of one call (k and the activation may change between calls: the k schedule). */
export interface CoderCall {
  k: number;
  activation: Activation;
  multiTopk: boolean;
  /** 'bf16': the encoder product on bf16 operands (CPU; default 'f32'). */
  computeDtype?: ComputeDType;
}

export interface EncodeResult {
  topActs: Tensor;
  topIndices: Tensor;
  preActs?: Tensor;
}

export interface ForwardResult {
  /** The reconstruction (the 4k one with multi_topk, as sparsify). */
  saeOut: Tensor;
  latentActs: Tensor;
  /** int32 */
  latentIndices: Tensor;
  fvu: number;
  auxkLoss: number;
  multiTopkFvu: number;
}

export interface StepLosses {
  loss: number;
  fvu: number;
  auxkLoss: number;
  multiTopkFvu: number;
  /** jumprelu: SAELens's pre-activation loss over the dead latents (in loss). */
  preActLoss?: number;
}

export interface StepCall extends CoderCall {
  /** Target (transcoders: the module output). Default: x. */
  y?: Tensor;
  /** Dead latents (nonzero = dead) for the AuxK loss. */
  deadMask?: Tensor | Uint8Array;
  /** AuxK's dead latents are the state's own counters above their threshold (see updateDeadLatents). Not with deadMask. */
  deadFromCounters?: boolean;
  auxkAlpha: number;
  lossScale: number;
  /** Normaliser of the losses instead of this batch's variance. */
  totalVariance?: number;
  /** int32 [M]: entries of the latents selected in this step are set to 1. */
  didFire?: Tensor;
  /** Record the selected latents in the state itself (read with takeFired): the bookkeeping stays on the device. */
  trackFired?: boolean;
  /** Renormalise the decoder rows before the forward (SAEs with normalize_decoder). */
  normalizeDecoder: boolean;
  /** Train on rows [begin, end) of x (and y) only: the one micro-batch API. */
  rows?: [number, number];
  /**
   * With rows: normalise by the variance of the whole batch (y, else x) times the rows' share of
   * it, computed on the state's device (sparsify PR #138's micro-batch normaliser).
   */
  batchVariance?: boolean;
}

/**
 * One optimizer update of every parameter of a coder (its hyperparameters at this step).
 * maxGradNorm > 0: first torch's clip_grad_norm_ over every gradient of the coder (after the
 * decoder projection), as SAELens's trainer before each step; 0 or absent: no clipping.
 */
export type OptimizerUpdate = { project: boolean; maxGradNorm?: number } & (
  | { kind: 'adam'; lr: number; beta1: number; beta2: number; eps: number; step: number }
  | { kind: 'signum'; lr: number; momentum: number; ckp1: number }
  | {
      kind: 'muon';
      lr: number;
      momentum: number;
      nesterov: boolean;
      weightDecay: number;
      nsSteps: number;
      /** The Adam half (1-D parameters). */
      vectorLr: number;
      beta1: number;
      beta2: number;
      eps: number;
      step: number;
    }
);

/**
 * Optimizer moments by slot: m (exp_avg, muon's momentum buffer), v (exp_avg_sq), z
 * (schedule-free signum's z), each by parameter name. A slot a parameter has not used yet is absent.
 */
export type MomentSlot = 'm' | 'v' | 'z';
export type Moments = Record<MomentSlot, Map<CoderParamName, Tensor>>;

/**
 * What the kind kernels (kind-step.ts, ops/threshold.ts) read and write in place, on the state's
 * device: the parameters, the gradient accumulators and the int32 [M] fired marks that
 * updateDeadLatents folds into the dead-latent counters.
 */
export interface KindTensors {
  params: Map<CoderParamName, Tensor>;
  grads: Map<CoderParamName, Tensor>;
  fired: Tensor;
}

export interface CoderState {
  readonly device: Device;
  /** Parameter names and shapes (fixed for the coder's life). */
  readonly paramShapes: ReadonlyMap<CoderParamName, readonly number[]>;
  /** False for encoder-only coders (loaded with decoder: false): inference of the encoder only. */
  readonly hasDecoder: boolean;

  /** The host parameter tensors (cpu: live; cuda: the host copy, a DeviceError when the device copy is newer). */
  hostParams(): Map<CoderParamName, Tensor>;
  /** Makes hostParams() current (cuda: one read of the device parameters; cpu: nothing). */
  syncToHost(): Promise<void>;
  /** The live gradient accumulators (cpu; a DeviceError where they live on a device). */
  liveGrads(): Map<CoderParamName, Tensor>;
  /** Host copies of the gradient accumulators (the caller disposes them). */
  readGrads(): Promise<Map<CoderParamName, Tensor>>;
  zeroGrads(): void;

  encode(x: Tensor, call: CoderCall, returnPreActs: boolean): Promise<EncodeResult>;
  decode(topActs: Tensor, topIndices: Tensor): Promise<Tensor>;
  forward(x: Tensor, call: CoderCall & { y?: Tensor; deadMask?: Tensor | Uint8Array; totalVariance?: number }): Promise<ForwardResult>;
  /** Forward, losses and backward ADDED into the gradient accumulators: one native call. */
  forwardBackward(x: Tensor, call: StepCall): Promise<StepLosses>;
  /** The tensors the kind kernels work on (cuda: device views of the state's own buffers). */
  kindTensors(): Promise<KindTensors>;
  /** The latents selected by trackFired steps since the last call, 0/1 per latent; clears them. */
  takeFired(): Promise<Int32Array>;
  /**
   * sparsify's dead-latent bookkeeping at an optimizer step: num_tokens_since_fired += tokens,
   * then 0 for the latents selected by trackFired steps since the last update (which clears
   * them). A latent is dead when its counter exceeds the threshold. Returns the number dead.
   */
  updateDeadLatents(tokens: number): Promise<number>;
  /** The counters (tokens since each latent fired), a host copy. */
  readDeadLatents(): Promise<Float64Array>;
  /** Sets the threshold (dead_feature_threshold) and the counters (default: all 0). */
  loadDeadLatents(threshold: number, counts?: Float64Array): Promise<void>;
  /** b_dec = mean_0(y ?? x); transcoders also encoder.bias = -(mean_0(x) W_enc^T). */
  initBiases(x: Tensor, y: Tensor | undefined, transcode: boolean): Promise<void>;

  /**
   * Projection of the decoder grad (update.project), clipping (update.maxGradNorm), the update,
   * zeroed grads: one native call. Returns the global gradient norm before clipping when clipping.
   */
  optimizerStep(update: OptimizerUpdate): Promise<number | undefined>;
  /** Schedule-free: p = lerp(p, z, weight) for every parameter with a z. */
  lerpToZ(weight: number): Promise<void>;
  /** The live moment tensors (cpu; a DeviceError where they live on a device). */
  liveMoments(): Moments;
  /** Host copies of the moments (the caller disposes them). */
  readMoments(): Promise<Moments>;
  /**
   * Replaces every moment with `moments` (takes ownership of the tensors; slots not given start
   * fresh). Synchronous: a device state writes them before its next call.
   */
  loadMoments(moments: Moments): void;

  readonly isDisposed: boolean;
  dispose(): void;
}

export function emptyMoments(): Moments {
  return { m: new Map(), v: new Map(), z: new Map() };
}

export function disposeMoments(m: Moments): void {
  for (const slot of Object.values(m)) for (const t of slot.values()) t.dispose();
}

export type CoderStateFactory = (cfg: SparseCoderConfig, params: Map<CoderParamName, Tensor>) => Promise<CoderState>;
