/**
 * The seeded generators of the library (and of its tests), so a seed gives the same numbers on
 * every platform.
 *
 * Rng: xoshiro128** seeded through splitmix32 (coder initialisation, test data).
 * mulberry32: a one-word generator for shuffles and quick reproducible test data.
 */
export class Rng {
  private s = new Uint32Array(4);

  constructor(seed: number) {
    let x = (Math.trunc(seed) >>> 0) ^ 0x9e3779b9;
    for (let i = 0; i < 4; i++) {
      // splitmix32
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
    if (this.s.every((v) => v === 0)) this.s[0] = 1;
  }

  /** Next 32 random bits. */
  nextU32(): number {
    const s = this.s;
    const r = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return r;
  }

  /** Uniform in [0, 1) with 24 random bits (exactly representable in float32). */
  uniform(): number {
    return (this.nextU32() >>> 8) / 16777216;
  }

  /** Fills `out` with U(lo, hi). */
  fillUniform(out: Float32Array, lo: number, hi: number): Float32Array {
    const w = hi - lo;
    for (let i = 0; i < out.length; i++) out[i] = lo + w * this.uniform();
    return out;
  }

  /** Standard normal (Box-Muller). */
  normal(): number {
    let u = 0;
    while (u === 0) u = this.uniform();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.uniform());
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}


/** mulberry32: uniform numbers in [0, 1) from a 32-bit seed (each call advances the state). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
