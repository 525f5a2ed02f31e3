/**
 * One latent's entry of `features.jsonl` and the per-coder `summary.json`, with their writers.
 * Numbers are rounded to 6 significant digits (float32 carries about 7) to keep the files short.
 */
import type { LogitEffects } from './logit-effects.js';

export interface ContextExample {
  row: number;
  pos: number;
  act: number;
  /** First position of the window in the row (pos - start indexes `tokens`). */
  start: number;
  tokens: number[];
  values: number[];
}

export interface FeatureRecord {
  index: number;
  /** Firing tokens / evaluated tokens. */
  frac_nonzero: number;
  count: number;
  max_act: number;
  /** Mean over the firing tokens (0 for a dead latent). */
  mean_act: number;
  top: ContextExample[];
  quantiles: { lo: number; hi: number; contains: number; count: number; examples: ContextExample[] }[];
  /** Counts of firing activations in equal-width bins over [min, max] of the firing values. */
  histogram: { min: number; max: number; counts: number[] };
  logits: { pos: { token: number; value: number }[]; neg: { token: number; value: number }[]; histogram?: LogitEffects['histogram'] };
  /** The 3 largest entries of the unit-norm decoder row, as SAEDashboard's neuron alignment. */
  neuron_alignment: { indices: number[]; values: number[]; l1: number[] };
}

/** `<name>/summary.json`: per-latent statistics and the byte offset of each line of features.jsonl (offsets[M] = its size). */
export const SUMMARY_FILE = 'summary.json';

export interface FeatureSummaryFile {
  num_latents: number;
  count: number[];
  frac_nonzero: number[];
  max_act: number[];
  mean_act: number[];
  offsets: number[];
}

export const r6 = (x: number) => (x === 0 ? 0 : +x.toPrecision(6));

/**
 * JSON.stringify(rec), with the bulky example arrays joined directly (same text, several times
 * faster; their entries are finite numbers: ids, and activations filtered to (0, Infinity)).
 */
export function recordJson(rec: FeatureRecord): string {
  const ex = (e: ContextExample) =>
    `{"row":${e.row},"pos":${e.pos},"act":${JSON.stringify(e.act)},"start":${e.start},"tokens":[${e.tokens.join(',')}],"values":[${e.values.join(',')}]}`;
  const list = (xs: ContextExample[]) => `[${xs.map(ex).join(',')}]`;
  // Spreading keeps each key in place, so the text equals JSON.stringify(rec).
  const head = JSON.stringify({ ...rec, top: 0, quantiles: 0 });
  const q = `[${rec.quantiles.map(({ examples, ...g }) => JSON.stringify({ ...g, examples: 0 }).replace(/"examples":0}$/, `"examples":${list(examples)}}`)).join(',')}]`;
  return head.replace('"top":0,"quantiles":0', `"top":${list(rec.top)},"quantiles":${q}`);
}

/** The 3 signed-largest entries of the unit-norm decoder row, with |v| / L1 of the row. */
export function neuronAlignment(row: Float32Array): FeatureRecord['neuron_alignment'] {
  let norm = 0, l1 = 0;
  for (const v of row) {
    norm += v * v;
    l1 += Math.abs(v);
  }
  norm = Math.sqrt(norm);
  if (!(norm > 0)) return { indices: [], values: [], l1: [] };
  const order = Array.from({ length: row.length }, (_, j) => j).sort((a, b) => row[b] - row[a] || a - b).slice(0, 3);
  return { indices: order, values: order.map((j) => r6(row[j] / norm)), l1: order.map((j) => r6(Math.abs(row[j]) / l1)) };
}
