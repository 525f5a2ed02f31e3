/**
 * sparsify's learning-rate laws and schedules: the default lr of each optimizer for a coder with
 * M latents, and HF's linear warmup/decay multiplier.
 */
import type { OptimizerKind } from './optimizer.js';

/** sparsify's default learning rate for `kind` and a coder with M latents. */
export function defaultLr(kind: OptimizerKind, numLatents: number): number {
  switch (kind) {
    case 'adam':
      return 2e-4 / Math.sqrt(numLatents / 2 ** 14);
    case 'signum':
      return 5e-3 / Math.sqrt(numLatents / 2 ** 14);
    case 'muon':
      return 2e-3;
  }
}

/**
 * HF get_linear_schedule_with_warmup as a multiplier: s/w for s < w, else max(0, (T-s)/(T-w)).
 * `step` counts optimizer steps taken so far (the multiplier for the next step).
 */
export function linearWarmupDecay(step: number, warmupSteps: number, totalSteps: number): number {
  if (step < warmupSteps) return step / Math.max(1, warmupSteps);
  return Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warmupSteps));
}
