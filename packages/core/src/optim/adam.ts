/** torch.optim.Adam (betas 0.9/0.999, eps 1e-8, no weight decay), one group per coder. */
import { ValueError } from '../errors.js';
import type { SparseCoder } from '../sparse-coder.js';
import { BaseOptimizer, type OptimizerOptions } from './optimizer.js';

export class Adam extends BaseOptimizer {
  readonly kind = 'adam' as const;
  readonly betas: [number, number];
  readonly eps: number;

  constructor(coders: SparseCoder[], opts: OptimizerOptions = {}) {
    super('adam', coders, opts);
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    if (!this.betas.every((b) => b >= 0 && b < 1)) throw new ValueError(`adam: betas must be in [0, 1), got ${this.betas}`);
    for (const g of this.groups) g.scalars = { step: 0 };
  }

  protected slotNames(): string[] {
    return ['exp_avg', 'exp_avg_sq'];
  }

  async step(lrMultiplier = 1): Promise<void> {
    this.checkMultiplier(lrMultiplier);
    for (const g of this.groups) {
      g.scalars.step += 1;
      await this.apply(g, { kind: 'adam', lr: g.lr * lrMultiplier, beta1: this.betas[0], beta2: this.betas[1], eps: this.eps, step: g.scalars.step });
    }
  }
}
