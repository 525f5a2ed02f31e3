import { ValueError } from '../errors.js';
import type { SparseCoder } from '../sparse-coder.js';
import { Adam } from './adam.js';
import { Muon } from './muon.js';
import type { Optimizer, OptimizerKind, OptimizerOptions } from './optimizer.js';
import { ScheduleFreeSignum } from './signum.js';

export { Adam } from './adam.js';
export { Muon } from './muon.js';
export { ScheduleFreeSignum } from './signum.js';
export { defaultLr, linearWarmupDecay } from './schedule.js';
export type { Optimizer, OptimizerKind, OptimizerOptions, OptimizerState } from './optimizer.js';

/** sparsify's optimizers over coders (one param group per coder). */
export function createOptimizer(kind: OptimizerKind, coders: SparseCoder[], opts: OptimizerOptions = {}): Optimizer {
  switch (kind) {
    case 'adam':
      return new Adam(coders, opts);
    case 'signum':
      return new ScheduleFreeSignum(coders, opts);
    case 'muon':
      return new Muon(coders, opts);
    default:
      throw new ValueError(`unknown optimizer '${kind as string}' (expected adam, signum or muon)`);
  }
}
export { saveOptimizerState, loadOptimizerState, readOptimizerStateFile } from './state-file.js';
