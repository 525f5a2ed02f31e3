/**
 * Interval ("quantile") samples as SAEDashboard draws them: the range (0, max] of a latent is cut
 * into `bins` intervals of equal width and up to `size` firing tokens are drawn uniformly from
 * each. One reservoir (Algorithm R, seeded, so runs repeat exactly) per latent and interval;
 * memory latents x bins x size. Zeros are not sampled (SAEDashboard's lowest interval includes
 * them); a value on an inner edge belongs to the higher interval, the max to the top one.
 */
import type { Example } from './top-examples.js';
import { compareExamples } from './top-examples.js';

export class IntervalSamples {
  readonly acts: Float32Array;
  readonly rows: Int32Array;
  readonly pos: Int32Array;
  /** Firing tokens seen per (latent, interval). */
  readonly seen: Float64Array;
  private state: number;

  constructor(
    readonly numLatents: number,
    readonly bins: number,
    readonly size: number,
    /** Each latent's max activation (the top edge of its intervals). */
    readonly max: Float32Array,
    seed = 0,
  ) {
    const n = numLatents * bins * size;
    this.acts = new Float32Array(n);
    this.rows = new Int32Array(n);
    this.pos = new Int32Array(n);
    this.seen = new Float64Array(numLatents * bins);
    this.state = seed >>> 0;
  }

  /** mulberry32 */
  private random(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  binOf(latent: number, act: number): number {
    return Math.min(this.bins - 1, Math.floor((act / this.max[latent]) * this.bins));
  }

  offer(latent: number, act: number, row: number, pos: number): void {
    const cell = latent * this.bins + this.binOf(latent, act);
    const seen = ++this.seen[cell];
    let slot: number;
    if (seen <= this.size) slot = seen - 1;
    else {
      slot = Math.floor(this.random() * seen);
      if (slot >= this.size) return;
    }
    const s = cell * this.size + slot;
    this.acts[s] = act;
    this.rows[s] = row;
    this.pos[s] = pos;
  }

  /** The intervals of a latent, highest first, each with its samples sorted highest first. */
  groups(latent: number): { lo: number; hi: number; count: number; examples: Example[] }[] {
    const out = [];
    const mx = this.max[latent];
    for (let b = this.bins - 1; b >= 0; b--) {
      const cell = latent * this.bins + b;
      const n = Math.min(this.size, this.seen[cell]);
      const examples: Example[] = [];
      for (let i = 0; i < n; i++) {
        const s = cell * this.size + i;
        examples.push({ act: this.acts[s], row: this.rows[s], pos: this.pos[s] });
      }
      examples.sort(compareExamples);
      out.push({ lo: (mx * b) / this.bins, hi: (mx * (b + 1)) / this.bins, count: this.seen[cell], examples });
    }
    return out;
  }
}
