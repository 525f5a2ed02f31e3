/**
 * sparsify's default optimizer: ScheduleFreeWrapper(SignSGD(lr), momentum=0.95,
 * weight_decay_at_y=0, weight_lr_power=2, r=0). Parameters hold y while training; eval()
 * switches them to the averaged x (what checkpoints store), train() back to y.
 * Per-parameter state z; per-group k, lr_max, weight_sum (reference 5.3).
 */
import { ValueError } from '../errors.js';
import type { SparseCoder } from '../sparse-coder.js';
import { BaseOptimizer, type OptimizerOptions } from './optimizer.js';

export class ScheduleFreeSignum extends BaseOptimizer {
  readonly kind = 'signum' as const;
  readonly momentum: number;

  constructor(coders: SparseCoder[], opts: OptimizerOptions = {}) {
    super('signum', coders, opts);
    this.momentum = opts.momentum ?? 0.95;
    if (!(this.momentum > 0 && this.momentum < 1)) throw new ValueError(`signum: momentum must be in (0, 1), got ${this.momentum}`);
    for (const g of this.groups) g.scalars = { k: 0, lr_max: 0, weight_sum: 0 };
  }

  protected slotNames(): string[] {
    return ['z'];
  }

  async step(lrMultiplier = 1): Promise<void> {
    this.checkMultiplier(lrMultiplier);
    if (!this.trainMode) throw new ValueError('signum step in eval mode: call train() before step() (schedule-free)');
    for (const g of this.groups) {
      const lr = g.lr * lrMultiplier;
      const s = g.scalars;
      s.lr_max = Math.max(lr, s.lr_max);
      const weight = s.lr_max ** 2; // (k+1)^r * lr_max^weight_lr_power with r = 0, power 2
      s.weight_sum += weight;
      const ckp1 = s.weight_sum > 0 ? weight / s.weight_sum : 0;
      await this.apply(g, { kind: 'signum', lr, momentum: this.momentum, ckp1 });
      s.k += 1;
    }
  }

  override async eval(): Promise<void> {
    if (this.trainMode) await this.lerpAll(1 - 1 / this.momentum);
    this.trainMode = false;
  }

  override async train(): Promise<void> {
    if (!this.trainMode) await this.lerpAll(1 - this.momentum);
    this.trainMode = true;
  }
}
