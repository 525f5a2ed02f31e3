/** The trainer's arithmetic between the model forward and the coder steps (native: train_ops.cpp). */
import { linearWarmupDecay, native, Tensor } from '@sparsify/core';

import type { TrainConfig } from './train-config.js';

/** Rows `idx` (a host int32 tensor) of x [N,D]: a new tensor on x's device, computed off the event loop. */
export async function gatherRows(x: Tensor, idx: Tensor): Promise<Tensor> {
  if (x.device === 'cuda') return new Tensor(await native().cudaGatherRows(x.handle, idx.handle));
  return new Tensor(await native().trainGatherRows(x.handle, idx.handle));
}


/**
 * The lr multipliers of the next optimizer step after `step` steps (HF LambdaLR uses lambda(step)
 * for the next update): adam warmup + decay; muon [Muon part: decay without warmup, Adam part:
 * warmup + decay]; signum none (schedule-free).
 */
export function lrMultipliers(cfg: Pick<TrainConfig, 'optimizer' | 'lrWarmupSteps'>, step: number, numBatches: number): number[] {
  switch (cfg.optimizer) {
    case 'adam':
      return [linearWarmupDecay(step, cfg.lrWarmupSteps, numBatches)];
    case 'muon':
      return [linearWarmupDecay(step, 0, numBatches), linearWarmupDecay(step, cfg.lrWarmupSteps, numBatches)];
    case 'signum':
      return [1];
  }
}
