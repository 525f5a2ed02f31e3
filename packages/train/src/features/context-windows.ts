/**
 * Cuts the context windows of kept examples out of the scratch codes: the whole row when it is at
 * most `window` tokens, else `window` tokens around the position (clamped to the row). Each row is
 * read once and its codes scanned once for all the examples that need it.
 */
import type { ContextExample } from './feature-record.js';
import { r6 } from './feature-record.js';
import type { ScratchRow } from './scratch-codes.js';
import type { Example } from './top-examples.js';

export interface WindowRequest {
  latent: number;
  ex: Example;
  /** Where the finished example is pushed. */
  into: ContextExample[];
}

export function windowStart(pos: number, T: number, W: number): number {
  return T <= W ? 0 : Math.max(0, Math.min(T - W, pos - (W >> 1)));
}

export function fillWindows(requests: Map<number, WindowRequest[]>, readRow: (row: number) => ScratchRow, T: number, window: number, k: number): void {
  const W = Math.min(T, window);
  for (const row of [...requests.keys()].sort((a, b) => a - b)) {
    const { idx, act, ignored, tokens } = readRow(row);
    const byLatent = new Map<number, { start: number; values: number[] }[]>();
    for (const w of requests.get(row)!) {
      const start = windowStart(w.ex.pos, T, W);
      const values = new Array<number>(W).fill(0);
      const tk = new Array<number>(W);
      for (let j = 0; j < W; j++) tk[j] = tokens[start + j];
      if (!byLatent.has(w.latent)) byLatent.set(w.latent, []);
      byLatent.get(w.latent)!.push({ start, values });
      w.into.push({ row, pos: w.ex.pos, act: r6(w.ex.act), start, tokens: tk, values });
    }
    for (let e = 0; e < idx.length; e++) {
      const list = byLatent.get(idx[e]);
      const a = act[e];
      if (!list || !(a > 0) || a === Infinity) continue;
      const p = (e / k) | 0;
      if (ignored[p]) continue;
      for (const w of list) if (p >= w.start && p < w.start + W) w.values[p - w.start] = r6(a);
    }
  }
}
