/**
 * SAELens's training schedules for the sparsity coefficients and its activation-norm scaler
 * (SAELens 6.18 `training/optim.py` CoefficientScheduler, `training/activation_scaler.py`), for
 * training the ReLU / JumpReLU kinds as SAELens does.
 */
import { ValueError } from '@sparsify/core';

/** The L1 / L0 coefficient at training step `step` (0-based): final · min(step, W) / W, or final when W = 0. */
export function warmedUpCoefficient(final: number, step: number, warmUpSteps: number): number {
  if (!Number.isSafeInteger(warmUpSteps) || warmUpSteps < 0) throw new ValueError(`warm-up steps must be a non-negative integer, got ${warmUpSteps}`);
  if (warmUpSteps === 0) return final;
  return (final * Math.min(step, warmUpSteps)) / warmUpSteps;
}

/**
 * `expected_average_only_in`: s = sqrt(d_in) / (mean over batches of the batch's mean token
 * L2 norm); training then sees s·x and s is folded into the weights at the end. Batches are added
 * one at a time (the trainer streams n_batches_for_norm_estimate of them).
 */
export class NormScaleEstimate {
  private sum = 0;
  private count = 0;

  constructor(readonly dIn: number) {}

  add(b: Float32Array): void {
    const dIn = this.dIn;
    if (b.length === 0 || b.length % dIn !== 0) throw new ValueError(`normScalingFactor: a batch of ${b.length} values is not a whole number of ${dIn}-wide rows`);
    const rows = b.length / dIn;
    let s = 0;
    for (let r = 0; r < rows; r++) {
      let q = 0;
      for (let d = 0; d < dIn; d++) q += b[r * dIn + d] ** 2;
      s += Math.sqrt(q);
    }
    this.sum += s / rows;
    this.count++;
  }

  get batches(): number {
    return this.count;
  }

  /** s; a ValueError before any batch or when every token is 0. */
  factor(): number {
    if (this.count === 0) throw new ValueError('normScalingFactor: no batches');
    const s = Math.sqrt(this.dIn) / (this.sum / this.count);
    if (!Number.isFinite(s)) throw new ValueError(`normScalingFactor: the mean token norm is ${this.sum / this.count}; s = sqrt(d_in)/E||x|| is not finite`);
    return s;
  }
}

export function normScalingFactor(batches: Iterable<Float32Array>, dIn: number): number {
  const e = new NormScaleEstimate(dIn);
  for (const b of batches) e.add(b);
  return e.factor();
}
