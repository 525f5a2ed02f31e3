/**
 * The plain reference of the dead-latent counters that the coders' native states keep
 * (sparsify's trainer: num_tokens_since_fired): per coder, tokens since each latent last fired.
 * At every optimizer step: counts += tokens in the step, then counts[fired] = 0. A latent is
 * dead when its count exceeds dead_feature_threshold. Counts are float64 (exact to 2^53).
 */
export class DeadLatentCounter {
  readonly counts: Float64Array;

  constructor(
    readonly numLatents: number,
    readonly threshold: number,
    counts?: Float64Array,
  ) {
    this.counts = counts ? Float64Array.from(counts) : new Float64Array(numLatents);
    if (this.counts.length !== numLatents) throw new RangeError(`dead-latent counts have ${this.counts.length} entries, expected ${numLatents}`);
  }

  /** didFire: nonzero where the latent was selected at least once during the step. */
  update(tokensInStep: number, didFire: ArrayLike<number>): void {
    if (didFire.length !== this.numLatents) throw new RangeError(`didFire has ${didFire.length} entries, expected ${this.numLatents}`);
    const c = this.counts;
    for (let i = 0; i < c.length; i++) c[i] = didFire[i] ? 0 : c[i] + tokensInStep;
  }

  /** 1 where dead (count > threshold), else 0. */
  deadMask(): Uint8Array {
    const m = new Uint8Array(this.numLatents);
    for (let i = 0; i < m.length; i++) m[i] = this.counts[i] > this.threshold ? 1 : 0;
    return m;
  }

  numDead(): number {
    let n = 0;
    for (let i = 0; i < this.counts.length; i++) if (this.counts[i] > this.threshold) n++;
    return n;
  }

  deadFraction(): number {
    return this.numDead() / this.numLatents;
  }
}
