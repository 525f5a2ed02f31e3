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

/** Fused encode (never materialises N x M); the input is x - bDec when bDec is given. */
export async function thresholdEncode(w: ThresholdWeights, x: Tensor, bDec?: Tensor): Promise<SparseLatents> {
  const r = await native().thresholdEncode(handles(w), x.handle, bDec?.handle);
  return { topActs: new Tensor(r.acts), topIndices: new Tensor(r.indices), counts: new Tensor(r.counts) };
}

/** Float64 reference: the dense [N, M] activations (row-major). */
export function thresholdEncodeReference(w: ThresholdWeights, x: Tensor, bDec?: Tensor): Float64Array {
  return native().thresholdEncodeReference(handles(w), x.handle, bDec?.handle) as Float64Array;
}
