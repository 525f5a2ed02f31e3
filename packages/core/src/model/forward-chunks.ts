/**
 * Bounded scratch memory for the CPU forward. The native forward keeps about a dozen [tokens,
 * width] f32 buffers for the whole batch (residual, norms, attention, q/k/v, MLP), so its scratch
 * grows with batch x context; a batch larger than the budget runs as several forwards of whole
 * sequences, and their captures are joined. Results are identical (sequences are independent).
 */
import { Tensor } from '../tensor.js';

/** Default scratch budget of one native forward call (bytes); SPARSIFY_FORWARD_SCRATCH_MB overrides it. */
export function forwardScratchBudget(): number {
  const mb = Number(process.env.SPARSIFY_FORWARD_SCRATCH_MB);
  return Number.isFinite(mb) && mb > 0 ? mb * 2 ** 20 : 2 ** 30;
}

/** Scratch bytes per token of the native forward (its buffers: 6 of hidden, q/k/v, 2-3 of inner). */
export function scratchBytesPerToken(spec: { hidden: number; inter: number; heads: number; kvHeads?: number; headDim: number }): number {
  const q = spec.heads * spec.headDim;
  const kv = (spec.kvHeads ?? spec.heads) * spec.headDim;
  return 4 * (6 * spec.hidden + q + Math.max(3 * spec.hidden, q + 2 * kv + spec.inter) + 2 * spec.inter);
}

/** Sequences per native call so that the scratch stays within the budget (at least one). */
export function sequencesPerCall(perToken: number, seqLen: number, budget = forwardScratchBudget()): number {
  return Math.max(1, Math.floor(budget / (perToken * seqLen)));
}

/** Joins per-chunk tensors of [rows_i, ...] (or [b_i, T, V]) into one along the first dimension. */
export function joinRows(parts: Tensor[]): Tensor {
  const shape = [...parts[0].shape];
  shape[0] = parts.reduce((a, t) => a + t.shape[0], 0);
  const out = new Float32Array(shape.reduce((a, d) => a * d, 1));
  let at = 0;
  for (const t of parts) {
    const v = t.toFloat32Array();
    out.set(v, at);
    at += v.length;
    t.dispose();
  }
  return Tensor.from(out, shape);
}
