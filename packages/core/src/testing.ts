/**
 * Pieces of the training step exposed for tests only (the step itself runs them inside one
 * native call): `import { testing } from '@sparsify/core'`. Not part of the supported API.
 */
import { native } from './native.js';
import type { Tensor } from './tensor.js';

export const testing = {
  /** W_dec rows /= (norm + float32 eps), in place (what forwardBackward does first with normalize_decoder). */
  async normalizeDecoder(W_dec: Tensor): Promise<void> {
    await native().saeNormalizeDecoder(W_dec.handle);
  },
  /** grad rows -= <grad row, W_dec row> W_dec row, in place (what an optimizer step does first). */
  async projectDecoderGrad(W_dec: Tensor, grad: Tensor): Promise<void> {
    await native().saeProjectDecoderGrad(W_dec.handle, grad.handle);
  },
};
