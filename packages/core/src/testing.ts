/**
 * Pieces of the training step exposed for tests only (the step itself runs them inside one
 * native call): `import { testing } from '@sparsify/core'`. Not part of the supported API.
 */
import type { SaeReferenceRaw } from './addon-types.js';
import { native } from './native.js';
import { gemmBf16ForceWiden, matmulBf16Reference } from './ops/gemm-bf16.js';
import { deadArg, weightHandles, type CoderSpec, type CoderWeights } from './ops/sae.js';
import type { Tensor } from './tensor.js';

export type SaeReferenceResult = SaeReferenceRaw;

/**
 * Float64 reference (dense, slow; for tests). `frozen` supplies the parameters of the detached
 * paths (AuxK residual, AuxK / Multi-TopK latent selection), so finite differences of `loss`
 * in `w` reproduce sparsify's gradients.
 */
function saeReference(
  w: CoderWeights,
  frozen: CoderWeights | undefined,
  x: Tensor,
  y: Tensor | undefined,
  spec: CoderSpec,
  opts: { deadMask?: Tensor | Uint8Array; auxkAlpha?: number; totalVariance?: number; grads?: boolean } = {},
): SaeReferenceResult {
  return native().testing.saeReference(weightHandles(w), frozen ? weightHandles(frozen) : undefined, x.handle, y?.handle, {
    ...spec,
    deadMask: deadArg(opts.deadMask),
    auxkAlpha: opts.auxkAlpha ?? 0,
    totalVariance: opts.totalVariance ?? -1,
    grads: opts.grads ?? false,
  });
}

export const testing = {
  saeReference,
  matmulBf16Reference,
  gemmBf16ForceWiden,
  /** W_dec rows /= (norm + float32 eps), in place (what forwardBackward does first with normalize_decoder). */
  async normalizeDecoder(W_dec: Tensor): Promise<void> {
    await native().testing.saeNormalizeDecoder(W_dec.handle);
  },
  /** grad rows -= <grad row, W_dec row> W_dec row, in place (what an optimizer step does first). */
  async projectDecoderGrad(W_dec: Tensor, grad: Tensor): Promise<void> {
    await native().testing.saeProjectDecoderGrad(W_dec.handle, grad.handle);
  },
};
