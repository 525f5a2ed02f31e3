/**
 * The k schedule and the lr rule of a run, as sparsify's Trainer computes them (the
 * learning-rate laws and schedules themselves are @sparsify/core's `defaultLr` and
 * `linearWarmupDecay`).
 */
import { defaultLr, type OptimizerKind } from '@sparsify/core';

/** A coder's base lr: the run's `lr`, or (null or 0) sparsify's law for its latent count. */
export function coderLr(lr: number | null, optimizer: OptimizerKind, numLatents: number): number {
  return lr || defaultLr(optimizer, numLatents);
}

/** Python's round(): half to even. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** k in force for batch `globalStep` (linear decay over k_decay_steps batches, banker's rounding). */
export function currentK(globalStep: number, kDecaySteps: number, initialK: number, finalK: number): number {
  if (globalStep >= kDecaySteps) return finalK;
  const p = globalStep / kDecaySteps;
  return roundHalfEven(initialK * (1 - p) + finalK * p);
}

/** initial_k = min(num_latents of the first coder, round(10 * width of the first hookpoint)). */
export function initialK(numLatents: number, width: number): number {
  return Math.min(numLatents, roundHalfEven(10 * width));
}
