/**
 * The K highest activations of every latent, kept in one bounded min-heap per latent (memory
 * latents x K, never tokens x latents). Ties are broken deterministically: for equal activations
 * the earlier (row, pos) ranks higher, so the result does not depend on the order of the offers.
 */
export interface Example {
  row: number;
  pos: number;
  act: number;
}

export class TopExamples {
  readonly acts: Float32Array;
  readonly rows: Int32Array;
  readonly pos: Int32Array;
  readonly size: Int32Array;

  constructor(
    readonly numLatents: number,
    readonly k: number,
  ) {
    this.acts = new Float32Array(numLatents * k);
    this.rows = new Int32Array(numLatents * k);
    this.pos = new Int32Array(numLatents * k);
    this.size = new Int32Array(numLatents);
  }

  /** true when slot a ranks below slot b (lower act, or equal act and later position). */
  private worse(a: number, b: number): boolean {
    const x = this.acts[a], y = this.acts[b];
    if (x !== y) return x < y;
    if (this.rows[a] !== this.rows[b]) return this.rows[a] > this.rows[b];
    return this.pos[a] > this.pos[b];
  }

  /** The lowest kept activation of a latent once its heap is full, else -Infinity (a cheap pre-check). */
  threshold(latent: number): number {
    return this.size[latent] < this.k ? -Infinity : this.acts[latent * this.k];
  }

  offer(latent: number, act: number, row: number, pos: number): void {
    const base = latent * this.k;
    const n = this.size[latent];
    if (n < this.k) {
      let i = n;
      this.set(base + i, act, row, pos);
      this.size[latent] = n + 1;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!this.worse(base + i, base + p)) break;
        this.swap(base + i, base + p);
        i = p;
      }
      return;
    }
    const r = this.acts[base];
    if (act < r) return;
    if (act === r && (row > this.rows[base] || (row === this.rows[base] && pos >= this.pos[base]))) return;
    this.set(base, act, row, pos);
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      let c = l;
      if (l + 1 < n && this.worse(base + l + 1, base + l)) c = l + 1;
      if (!this.worse(base + c, base + i)) break;
      this.swap(base + c, base + i);
      i = c;
    }
  }

  /** A latent's examples, highest first (ties: earlier row, then earlier position). */
  sorted(latent: number): Example[] {
    const base = latent * this.k;
    const out: Example[] = [];
    for (let i = 0; i < this.size[latent]; i++) out.push({ act: this.acts[base + i], row: this.rows[base + i], pos: this.pos[base + i] });
    return out.sort(compareExamples);
  }

  private set(s: number, act: number, row: number, pos: number): void {
    this.acts[s] = act;
    this.rows[s] = row;
    this.pos[s] = pos;
  }

  private swap(a: number, b: number): void {
    const x = this.acts[a], r = this.rows[a], p = this.pos[a];
    this.acts[a] = this.acts[b];
    this.rows[a] = this.rows[b];
    this.pos[a] = this.pos[b];
    this.acts[b] = x;
    this.rows[b] = r;
    this.pos[b] = p;
  }
}

/** Highest activation first; ties by earlier row, then earlier position. */
export function compareExamples(a: Example, b: Example): number {
  return b.act - a.act || a.row - b.row || a.pos - b.pos;
}
