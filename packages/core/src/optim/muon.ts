/**
 * sparsify's muon: Muon (momentum 0.95, Nesterov, weight decay 0.1, 5 Newton-Schulz steps) for
 * the 2-D parameters (encoder.weight, W_dec, W_skip) and torch Adam for the 1-D ones, both at lr
 * 2e-3 by default. Newton-Schulz runs in f32 on cpu; upstream runs it in bf16; on cuda its
 * GEMMs take bf16 operands with f32 accumulation (native/cuda/muon.cu), so cuda results match
 * cpu to bf16 rounding, not bit for bit. The Adam half runs at lr · vectorLrMultiplier.
 */
import type { SparseCoder } from '../sparse-coder.js';
import { BaseOptimizer, type OptimizerOptions } from './optimizer.js';

export class Muon extends BaseOptimizer {
  readonly kind = 'muon' as const;
  readonly momentum: number;
  readonly nesterov: boolean;
  readonly weightDecay: number;
  readonly nsSteps: number;
  readonly betas: [number, number];
  readonly eps: number;

  constructor(coders: SparseCoder[], opts: OptimizerOptions = {}) {
    super('muon', coders, opts);
    this.momentum = opts.momentum ?? 0.95;
    this.nesterov = opts.nesterov ?? true;
    this.weightDecay = opts.weightDecay ?? 0.1;
    this.nsSteps = opts.nsSteps ?? 5;
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    for (const g of this.groups) g.scalars = { step: 0 };
  }

  protected slotNames(shape: readonly number[]): string[] {
    return shape.length >= 2 ? ['exp_avg'] : ['exp_avg', 'exp_avg_sq'];
  }

  async step(lrMultiplier = 1, vectorLrMultiplier = lrMultiplier): Promise<void> {
    this.checkMultiplier(lrMultiplier);
    this.checkMultiplier(vectorLrMultiplier);
    // Muon on the 2-D parameters, Adam (at vectorLr) on the 1-D ones: one update per coder.
    for (const g of this.groups) {
      g.scalars.step += 1;
      await this.apply(g, {
        kind: 'muon', lr: g.lr * lrMultiplier, vectorLr: g.lr * vectorLrMultiplier,
        momentum: this.momentum, nesterov: this.nesterov, weightDecay: this.weightDecay, nsSteps: this.nsSteps,
        beta1: this.betas[0], beta2: this.betas[1], eps: this.eps, step: g.scalars.step,
      });
    }
  }
}
