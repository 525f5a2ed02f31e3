/**
 * Thin typed wrappers over the native sparse-coder kernels (native/bindings/cpu/sae.cpp).
 * The CPU CoderState uses these; tests compare them with the float64 reference (testing.ts).
 */
import type { SaeStepResultRaw, WeightHandles } from '../addon-types.js';
import { native } from '../native.js';
import type { ComputeDType } from '../compute-dtype.js';
import { Tensor } from '../tensor.js';

/** The parameter tensors as the native side names them. */
export interface CoderWeights {
  encW: Tensor;
  encB: Tensor;
  W_dec?: Tensor;
  b_dec: Tensor;
  W_skip?: Tensor;
}

export interface CoderSpec {
  k: number;
  groupmax: boolean;
  transcode: boolean;
  multiTopk: boolean;
  /** 'bf16': the encoder product on bf16 operands (default 'f32'; see compute-dtype.ts). */
  computeDtype?: ComputeDType;
}

/** @internal */
export function weightHandles(w: CoderWeights): WeightHandles {
  return { encW: w.encW.handle, encB: w.encB.handle, W_dec: w.W_dec?.handle, b_dec: w.b_dec.handle, W_skip: w.W_skip?.handle };
}

/** @internal */
export function deadArg(dead: Tensor | Uint8Array | undefined): unknown {
  if (dead === undefined) return undefined;
  return dead instanceof Tensor ? dead.handle : dead;
}

export async function saeEncode(
  w: CoderWeights,
  x: Tensor,
  spec: CoderSpec,
  preActs = false,
): Promise<{ acts: Tensor; indices: Tensor; preActs?: Tensor }> {
  const r = await native().saeEncode(weightHandles(w), x.handle, { ...spec, preActs });
  return { acts: new Tensor(r.acts), indices: new Tensor(r.indices), ...(r.preActs ? { preActs: new Tensor(r.preActs) } : {}) };
}

export async function saeDecode(W_dec: Tensor, b_dec: Tensor | undefined, acts: Tensor, indices: Tensor): Promise<Tensor> {
  return new Tensor(await native().saeDecode(W_dec.handle, b_dec?.handle, acts.handle, indices.handle));
}

export interface SaeStepOptions {
  deadMask?: Tensor | Uint8Array;
  auxkAlpha?: number;
  lossScale?: number;
  totalVariance?: number;
  didFire?: Tensor;
  normalizeDecoder?: boolean;
  outputs?: boolean;
  /** Tests: always use the gather/scatter AuxK route (not the dense-GEMM one). */
  forceSparseAux?: boolean;
}

/** saeStep's result with its tensors wrapped. */
export type SaeStepResult = Omit<SaeStepResultRaw, 'saeOut' | 'latentActs' | 'latentIndices'> & {
  saeOut?: Tensor;
  latentActs?: Tensor;
  latentIndices?: Tensor;
};

/** Forward + losses, and the backward added into `grads` when given: one native call. */
export async function saeStep(
  w: CoderWeights,
  grads: CoderWeights | undefined,
  x: Tensor,
  y: Tensor | undefined,
  spec: CoderSpec,
  opts: SaeStepOptions = {},
): Promise<SaeStepResult> {
  const r = await native().saeStep(weightHandles(w), grads ? weightHandles(grads) : undefined, x.handle, y?.handle, {
    ...spec,
    deadMask: deadArg(opts.deadMask),
    auxkAlpha: opts.auxkAlpha ?? 0,
    lossScale: opts.lossScale ?? 1,
    totalVariance: opts.totalVariance ?? -1,
    didFire: opts.didFire?.handle,
    normalizeDecoder: opts.normalizeDecoder ?? false,
    outputs: opts.outputs ?? false,
    forceSparseAux: opts.forceSparseAux ?? false,
  });
  const out: SaeStepResult = {
    fvu: r.fvu,
    auxkLoss: r.auxkLoss,
    multiTopkFvu: r.multiTopkFvu,
    loss: r.loss,
    totalVariance: r.totalVariance,
    numDead: r.numDead,
  };
  if (r.saeOut) {
    out.saeOut = new Tensor(r.saeOut);
    out.latentActs = new Tensor(r.latentActs!);
    out.latentIndices = new Tensor(r.latentIndices!);
  }
  return out;
}

export async function saeInitBiases(w: CoderWeights, x: Tensor, y: Tensor | undefined, transcode: boolean): Promise<void> {
  await native().saeInitBiases(weightHandles(w), x.handle, y?.handle, transcode);
}
