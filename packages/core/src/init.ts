/**
 * Seeded initialisation of sparse coders. sparsify draws from torch's RNG, which we do not
 * reproduce; the distribution is the same: encoder.weight ~ U(-1/sqrt(d_in), 1/sqrt(d_in)).
 */
import { Rng } from './random.js';

/** encoder.weight [M, D] ~ U(-1/sqrt(D), 1/sqrt(D)), as nn.Linear's default init. */
export function initEncoderWeight(numLatents: number, dIn: number, seed: number): Float32Array {
  const bound = 1 / Math.sqrt(dIn);
  return new Rng(seed).fillUniform(new Float32Array(numLatents * dIn), -bound, bound);
}

/** Rows divided by (L2 norm + float32 eps), as sparsify's set_decoder_norm_to_unit_norm. */
export function normalizeRows(w: Float32Array, rows: number, cols: number): Float32Array {
  const eps = 1.1920928955078125e-7;
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let c = 0; c < cols; c++) ss += w[r * cols + c] * w[r * cols + c];
    const den = Math.fround(Math.fround(Math.sqrt(ss)) + eps);
    for (let c = 0; c < cols; c++) out[r * cols + c] = w[r * cols + c] / den;
  }
  return out;
}
