/**
 * Running per-latent statistics of the feature pass: firing count, sum, max, smallest firing value
 * and the top-K heap, folded in batch by batch from the k-sparse codes (memory latents x K).
 */
import { TopExamples } from './top-examples.js';

export class LatentStats {
  readonly count: Float64Array;
  readonly sum: Float64Array;
  readonly max: Float32Array;
  readonly minFiring: Float32Array;
  readonly top: TopExamples;

  constructor(
    readonly numLatents: number,
    topK: number,
  ) {
    this.count = new Float64Array(numLatents);
    this.sum = new Float64Array(numLatents);
    this.max = new Float32Array(numLatents);
    this.minFiring = new Float32Array(numLatents).fill(Infinity);
    this.top = new TopExamples(numLatents, topK);
  }

  /** One batch of codes [rows * T, k] whose first row is dataset row `rowBase`. */
  add(idx: Int32Array, act: Float32Array, k: number, ignored: Uint8Array, rowBase: number, T: number): void {
    for (let t = 0; t < ignored.length; t++) {
      if (ignored[t]) continue;
      const row = rowBase + ((t / T) | 0);
      const pos = t % T;
      for (let j = 0; j < k; j++) {
        const a = act[t * k + j];
        if (!(a > 0)) continue;
        const i = idx[t * k + j];
        this.count[i]++;
        this.sum[i] += a;
        if (a > this.max[i]) this.max[i] = a;
        if (a < this.minFiring[i]) this.minFiring[i] = a;
        if (a >= this.top.threshold(i)) this.top.offer(i, a, row, pos);
      }
    }
  }
}
