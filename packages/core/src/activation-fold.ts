/**
 * Folding an activation scale into a coder trained on s·x, so that it reads raw x: SAELens 6.18's
 * fold_activation_norm_scaling_factor (sae.py) for `normalize_activations: expected_average_only_in`,
 * W_enc ← s·W_enc, W_dec ← W_dec / s, b_dec ← b_dec / s, exact because
 * (x − b_dec/s)(s·W_enc) = (s·x − b_dec)·W_enc. b_enc, log_threshold and W_skip are unchanged
 * (the skip term of s·x, divided by s, is the skip term of x). BatchTopK's topk_threshold is in
 * h·||W_dec[i]|| units, and the norms shrink by s, so it becomes θ / s.
 */
import { ValueError } from './errors.js';
import { Tensor } from './tensor.js';

/** New tensors (the caller disposes them) for the parameters `params`, folded by `s`. */
export function foldActivationScale(params: ReadonlyMap<string, Tensor>, s: number): Map<string, Tensor> {
  if (!Number.isFinite(s) || !(s > 0)) throw new ValueError(`activation scale must be a finite number > 0, got ${s}`);
  const factor: Record<string, number> = { 'encoder.weight': s, W_dec: 1 / s, b_dec: 1 / s, topk_threshold: 1 / s };
  const out = new Map<string, Tensor>();
  for (const [name, t] of params) {
    const f = factor[name];
    out.set(name, f === undefined ? t.clone() : Tensor.from(t.toFloat32Array().map((v) => v * f), t.shape));
  }
  return out;
}
