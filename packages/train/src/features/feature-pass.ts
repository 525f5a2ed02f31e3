/**
 * The feature pass: for every latent of every coder, its top-activating contexts, interval
 * samples, firing statistics, activation histogram and logit effects, from one streaming pass of
 * the model over a dataset.
 *
 * Memory stays bounded by latents x kept examples: the model runs once; each batch's k-sparse
 * codes are folded into per-latent statistics and top-K heaps, and appended to a scratch file
 * (tokens x k entries, never tokens x latents). Two cheap scans of that file then draw the
 * interval samples and the histograms (both need each latent's max) and cut the context windows
 * of the kept examples. Activations are the coder's k-sparse code (`encode`); a latent fires at
 * a token when its activation there is > 0. Tokens in `ignoreTokens` (BOS/EOS/pad by default in
 * the CLI) count as not evaluated: they never fire and their values in windows are 0.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { Tensor, writeFileAtomic, type Unembedding } from '@sparsify/core';

import type { ModelLike, TokenDatasetLike } from '../trainer.js';
import { IntervalSamples } from './interval-samples.js';
import { binIndex, histogram, logitEffects, type LogitEffects } from './logit-effects.js';
import { TopExamples, type Example } from './top-examples.js';

/** What the pass needs of a sparse coder (SparseCoder fits). */
export interface FeatureCoderLike {
  readonly cfg: { readonly transcode: boolean };
  readonly numLatents: number;
  readonly dIn: number;
  encode(x: Tensor): Promise<{ topActs: Tensor; topIndices: Tensor }>;
  params(): Map<string, Tensor>;
}

export interface FeatureCoderEntry {
  /** Output folder name (the coder's folder in the run, e.g. `h.0` or `h.0/seed1`). */
  name: string;
  hookpoint: string;
  coder: FeatureCoderLike;
}

export interface FeaturePassOptions {
  /** Top activations kept per latent (default 20). */
  top?: number;
  /** Interval groups (default 5) and samples per group (default 5). */
  intervals?: number;
  intervalSize?: number;
  /** Bins of the activation and logit histograms (default 50). */
  histogramBins?: number;
  /** Rows of the logit tables (default 10). */
  logitRows?: number;
  /** Context window: the whole row when ctx_len <= window, else `window` tokens around the position (default 64). */
  window?: number;
  /** Dataset rows per model forward (default 8). */
  batchSize?: number;
  /** Seed of the interval sampling (default 0). */
  seed?: number;
  ignoreTokens?: readonly number[];
  /** The model's unembedding for logit effects (omitted: empty logit tables). */
  unembedding?: Unembedding;
  /** Scratch folder for the sparse codes (removed afterwards). */
  scratchDir: string;
  onProgress?: (rowsDone: number, rowsTotal: number) => void;
}

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

export interface FeaturePassSummary {
  rows: number;
  ctxLen: number;
  /** All positions seen, and the evaluated ones (not ignored). */
  positions: number;
  tokens: number;
  coders: { name: string; hookpoint: string; numLatents: number; k: number; transcode: boolean; dead: number; logitEffects: boolean }[];
  /**
   * Seconds spent in: the model forward and encode calls (`forward`), folding codes into the
   * statistics and heaps plus writing the scratch file (`stream`), the rescans for histograms and
   * interval samples (`rescan`), logit effects (`logits`), windows and JSON output (`output`).
   * `forward` + `stream` + `rescan` grow with the tokens; `logits` and `output` with the latents.
   */
  seconds: { forward: number; stream: number; rescan: number; logits: number; output: number };
}

interface CoderState {
  entry: FeatureCoderEntry;
  k: number;
  count: Float64Array;
  sum: Float64Array;
  max: Float32Array;
  minFiring: Float32Array;
  top: TopExamples;
  idxFd: number;
  actFd: number;
  idxPath: string;
  actPath: string;
}

/** Rounds to 6 significant digits (float32 has about 7) to keep the JSON short. */
const r6 = (x: number) => (x === 0 ? 0 : +x.toPrecision(6));

/**
 * Runs the pass and writes `outDir/<name>/features.jsonl` for every coder (one JSON object per
 * latent, in index order; each file written under a temporary name, then renamed).
 */
export async function runFeaturePass(
  coders: readonly FeatureCoderEntry[],
  model: ModelLike,
  dataset: TokenDatasetLike,
  outDir: string,
  opts: FeaturePassOptions,
): Promise<FeaturePassSummary> {
  const K = opts.top ?? 20;
  const bins = opts.histogramBins ?? 50;
  const B = opts.batchSize ?? 8;
  const T = dataset.ctxLen;
  const R = dataset.length;
  const ignore = new Set(opts.ignoreTokens ?? []);
  mkdirSync(opts.scratchDir, { recursive: true });
  const tokPath = join(opts.scratchDir, 'tokens.bin');
  const tokFd = openSync(tokPath, 'w+');
  const states: CoderState[] = coders.map((entry, c) => {
    const M = entry.coder.numLatents;
    const idxPath = join(opts.scratchDir, `codes-${c}.idx`);
    const actPath = join(opts.scratchDir, `codes-${c}.act`);
    return {
      entry,
      k: 0,
      count: new Float64Array(M),
      sum: new Float64Array(M),
      max: new Float32Array(M),
      minFiring: new Float32Array(M).fill(Infinity),
      top: new TopExamples(M, K),
      idxFd: openSync(idxPath, 'w+'),
      actFd: openSync(actPath, 'w+'),
      idxPath,
      actPath,
    };
  });
  const hookpoints = [...new Set(coders.map((c) => c.hookpoint))];
  const captureInputs = coders.some((c) => c.coder.cfg.transcode);
  let evaluated = 0;
  const seconds = { forward: 0, stream: 0, rescan: 0, logits: 0, output: 0 };
  const started = performance.now();
  try {
    // Pass 1: the model forward, the codes, statistics and top-K heaps.
    for (let lo = 0; lo < R; lo += B) {
      const n = Math.min(B, R - lo);
      const ids = Int32Array.from(await dataset.rows(Array.from({ length: n }, (_, i) => lo + i)));
      writeSync(tokFd, new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength));
      const ignored = new Uint8Array(n * T);
      for (let t = 0; t < n * T; t++) if (ignore.has(ids[t])) ignored[t] = 1;
      for (const v of ignored) evaluated += 1 - v;
      const input = Tensor.from(ids, [n, T]);
      let t0 = performance.now();
      const out = await model.forward(input, { hookpoints, captureInputs });
      seconds.forward += (performance.now() - t0) / 1000;
      input.dispose();
      try {
        for (const s of states) {
          const { coder, hookpoint } = s.entry;
          const x = coder.cfg.transcode ? out.capturedInputs?.get(hookpoint) : out.captured.get(hookpoint);
          if (!x) throw new Error(`internal: the forward captured no ${coder.cfg.transcode ? 'input' : 'output'} of ${hookpoint}`);
          t0 = performance.now();
          const enc = await coder.encode(x);
          seconds.forward += (performance.now() - t0) / 1000;
          const idx = enc.topIndices.toInt32Array();
          const act = enc.topActs.toFloat32Array();
          s.k = enc.topIndices.shape[1];
          enc.topIndices.dispose();
          enc.topActs.dispose();
          writeSync(s.idxFd, new Uint8Array(idx.buffer, idx.byteOffset, idx.byteLength));
          writeSync(s.actFd, new Uint8Array(act.buffer, act.byteOffset, act.byteLength));
          accumulate(s, idx, act, ignored, lo, T);
        }
      } finally {
        for (const t of out.captured.values()) t.dispose();
        for (const t of out.capturedInputs?.values() ?? []) t.dispose();
      }
      opts.onProgress?.(lo + n, R);
    }
    seconds.stream = (performance.now() - started) / 1000 - seconds.forward;
    const summary: FeaturePassSummary = { rows: R, ctxLen: T, positions: R * T, tokens: evaluated, coders: [], seconds };
    for (const s of states) {
      const M = s.entry.coder.numLatents;
      const scan = new CodeScanner(tokFd, s, T, ignore);
      let t1 = performance.now();
      // Pass 2 (over the scratch codes): histograms and interval samples, which need each max.
      const hist = new Float64Array(M * bins);
      const samples = new IntervalSamples(M, opts.intervals ?? 5, opts.intervalSize ?? 5, s.max, opts.seed ?? 0);
      for (let row = 0; row < R; row++) {
        const { idx, act, ignored } = scan.row(row);
        for (let e = 0; e < idx.length; e++) {
          const a = act[e];
          const t = (e / s.k) | 0;
          if (!(a > 0) || ignored[t]) continue;
          const i = idx[e];
          hist[i * bins + binIndex(a, s.minFiring[i], s.max[i] - s.minFiring[i], bins)]++;
          samples.offer(i, a, row, t);
        }
      }
      seconds.rescan += (performance.now() - t1) / 1000;
      t1 = performance.now();
      const wDec = s.entry.coder.params().get('W_dec')?.toFloat32Array();
      const D = s.entry.coder.dIn;
      const effects =
        opts.unembedding && wDec && opts.unembedding.weight.shape[1] === D
          ? await logitEffects(wDec, M, opts.unembedding, opts.logitRows ?? 10, bins)
          : undefined;
      seconds.logits += (performance.now() - t1) / 1000;
      t1 = performance.now();
      // Pass 3: context windows of the kept examples, in blocks of latents.
      const perLatent = K + samples.bins * samples.size;
      const W = Math.min(T, opts.window ?? 64);
      const block = Math.max(1, Math.floor((1 << 25) / (perLatent * W * 8)));
      const file = join(outDir, s.entry.name, 'features.jsonl');
      mkdirSync(dirname(file), { recursive: true });
      const outFd = openSync(file + '.partial', 'w');
      const offsets: number[] = [];
      let offset = 0;
      let dead = 0;
      for (let lo = 0; lo < M; lo += block) {
        const hi = Math.min(M, lo + block);
        const records: FeatureRecord[] = [];
        const wanted = new Map<number, { latent: number; ex: Example; into: ContextExample[] }[]>();
        const want = (latent: number, ex: Example, into: ContextExample[]) => {
          if (!wanted.has(ex.row)) wanted.set(ex.row, []);
          wanted.get(ex.row)!.push({ latent, ex, into });
        };
        for (let i = lo; i < hi; i++) {
          const count = s.count[i];
          if (count === 0) dead++;
          const rec: FeatureRecord = {
            index: i,
            frac_nonzero: evaluated ? r6(count / evaluated) : 0,
            count,
            max_act: r6(s.max[i]),
            mean_act: count ? r6(s.sum[i] / count) : 0,
            top: [],
            quantiles: [],
            histogram: {
              min: count ? r6(s.minFiring[i]) : 0,
              max: r6(s.max[i]),
              counts: Array.from(hist.subarray(i * bins, (i + 1) * bins)),
            },
            logits: effects
              ? {
                  pos: effects[i].pos.map((x) => ({ token: x.token, value: r6(x.value) })),
                  neg: effects[i].neg.map((x) => ({ token: x.token, value: r6(x.value) })),
                  histogram: { min: r6(effects[i].histogram.min), max: r6(effects[i].histogram.max), counts: effects[i].histogram.counts },
                }
              : { pos: [], neg: [] },
            neuron_alignment: wDec ? alignment(wDec.subarray(i * D, (i + 1) * D)) : { indices: [], values: [], l1: [] },
          };
          for (const ex of s.top.sorted(i)) want(i, ex, rec.top);
          if (count > 0)
            for (const g of samples.groups(i)) {
              const group = { lo: r6(g.lo), hi: r6(g.hi), contains: evaluated ? g.count / evaluated : 0, count: g.count, examples: [] as ContextExample[] };
              rec.quantiles.push(group);
              for (const ex of g.examples) want(i, ex, group.examples);
            }
          records.push(rec);
        }
        // Fill the windows row by row (each scratch row read once per block, its codes scanned once).
        for (const row of [...wanted.keys()].sort((a, b) => a - b)) {
          const { idx, act, ignored, tokens } = scan.row(row);
          const byLatent = new Map<number, { start: number; values: number[] }[]>();
          for (const w of wanted.get(row)!) {
            const start = T <= W ? 0 : Math.max(0, Math.min(T - W, w.ex.pos - (W >> 1)));
            const values = new Array<number>(W).fill(0);
            if (!byLatent.has(w.latent)) byLatent.set(w.latent, []);
            byLatent.get(w.latent)!.push({ start, values });
            const tk = new Array<number>(W);
            for (let j = 0; j < W; j++) tk[j] = tokens[start + j];
            w.into.push({ row, pos: w.ex.pos, act: r6(w.ex.act), start, tokens: tk, values });
          }
          for (let e = 0; e < idx.length; e++) {
            const list = byLatent.get(idx[e]);
            const a = act[e];
            if (!list || !(a > 0) || a === Infinity) continue;
            const p = (e / s.k) | 0;
            if (ignored[p]) continue;
            for (const w of list) if (p >= w.start && p < w.start + W) w.values[p - w.start] = r6(a);
          }
        }
        // Rows were visited in row order: put each list back into its ranking.
        for (const rec of records) {
          rec.top = reorder(rec.top, s.top.sorted(rec.index));
          for (const g of rec.quantiles) g.examples.sort((a, b) => b.act - a.act || a.row - b.row || a.pos - b.pos);
          const line = Buffer.from(recordJson(rec) + '\n');
          offsets.push(offset);
          offset += line.length;
          writeSync(outFd, line);
        }
      }
      seconds.output += (performance.now() - t1) / 1000;
      fsyncSync(outFd);
      closeSync(outFd);
      renameSync(file + '.partial', file);
      offsets.push(offset);
      writeSummary(join(outDir, s.entry.name, SUMMARY_FILE), s, evaluated, offsets);
      const cfg = s.entry.coder.cfg;
      summary.coders.push({ name: s.entry.name, hookpoint: s.entry.hookpoint, numLatents: M, k: s.k, transcode: cfg.transcode, dead, logitEffects: !!effects });
    }
    return summary;
  } finally {
    closeSync(tokFd);
    for (const s of states) {
      closeSync(s.idxFd);
      closeSync(s.actFd);
    }
    rmSync(opts.scratchDir, { recursive: true, force: true });
  }
}

/** `<name>/summary.json`: per-latent statistics and the byte offset of each line (offsets[M] = file size), for the page's list. */
export const SUMMARY_FILE = 'summary.json';

export interface FeatureSummaryFile {
  num_latents: number;
  count: number[];
  frac_nonzero: number[];
  max_act: number[];
  mean_act: number[];
  offsets: number[];
}

function writeSummary(path: string, s: CoderState, evaluated: number, offsets: number[]): void {
  const M = s.entry.coder.numLatents;
  const body: FeatureSummaryFile = {
    num_latents: M,
    count: Array.from(s.count),
    frac_nonzero: Array.from(s.count, (c) => (evaluated ? r6(c / evaluated) : 0)),
    max_act: Array.from(s.max, r6),
    mean_act: Array.from(s.count, (c, i) => (c ? r6(s.sum[i] / c) : 0)),
    offsets,
  };
  writeFileAtomic(path, [JSON.stringify(body)]);
}

/**
 * JSON.stringify(rec), with the bulky example arrays joined directly (same text, several times
 * faster; their entries are finite numbers: ids, and activations filtered to (0, Infinity)).
 */
function recordJson(rec: FeatureRecord): string {
  const ex = (e: ContextExample) =>
    `{"row":${e.row},"pos":${e.pos},"act":${JSON.stringify(e.act)},"start":${e.start},"tokens":[${e.tokens.join(',')}],"values":[${e.values.join(',')}]}`;
  const list = (xs: ContextExample[]) => `[${xs.map(ex).join(',')}]`;
  // Spreading keeps each key in place, so the text equals JSON.stringify(rec).
  const head = JSON.stringify({ ...rec, top: 0, quantiles: 0 });
  const q = `[${rec.quantiles.map(({ examples, ...g }) => JSON.stringify({ ...g, examples: 0 }).replace(/"examples":0}$/, `"examples":${list(examples)}}`)).join(',')}]`;
  return head.replace('"top":0,"quantiles":0', `"top":${list(rec.top)},"quantiles":${q}`);
}

/** Folds one batch of codes into the statistics and the top-K heaps. */
function accumulate(s: CoderState, idx: Int32Array, act: Float32Array, ignored: Uint8Array, rowBase: number, T: number): void {
  const k = s.k;
  for (let t = 0; t < ignored.length; t++) {
    if (ignored[t]) continue;
    const row = rowBase + ((t / T) | 0);
    const pos = t % T;
    for (let j = 0; j < k; j++) {
      const a = act[t * k + j];
      if (!(a > 0)) continue;
      const i = idx[t * k + j];
      s.count[i]++;
      s.sum[i] += a;
      if (a > s.max[i]) s.max[i] = a;
      if (a < s.minFiring[i]) s.minFiring[i] = a;
      if (a >= s.top.threshold(i)) s.top.offer(i, a, row, pos);
    }
  }
}

/** Reads rows of the scratch files back (tokens, codes, ignore mask). */
class CodeScanner {
  private readonly tokBuf: Int32Array;
  private readonly idxBuf: Int32Array;
  private readonly actBuf: Float32Array;
  private readonly ignoredBuf: Uint8Array;
  private readonly ignore: Set<number> | undefined;

  constructor(
    private readonly tokFd: number,
    private readonly s: CoderState,
    private readonly T: number,
    ignore?: Set<number>,
  ) {
    this.tokBuf = new Int32Array(T);
    this.idxBuf = new Int32Array(T * s.k);
    this.actBuf = new Float32Array(T * s.k);
    this.ignoredBuf = new Uint8Array(T);
    this.ignore = ignore;
  }

  row(r: number): { tokens: Int32Array; idx: Int32Array; act: Float32Array; ignored: Uint8Array } {
    const T = this.T, k = this.s.k;
    readFully(this.tokFd, this.tokBuf, r * T * 4);
    readFully(this.s.idxFd, this.idxBuf, r * T * k * 4);
    readFully(this.s.actFd, this.actBuf, r * T * k * 4);
    this.ignoredBuf.fill(0);
    if (this.ignore) for (let p = 0; p < T; p++) if (this.ignore.has(this.tokBuf[p])) this.ignoredBuf[p] = 1;
    return { tokens: this.tokBuf, idx: this.idxBuf, act: this.actBuf, ignored: this.ignoredBuf };
  }
}

function readFully(fd: number, into: Int32Array | Float32Array, position: number): void {
  const bytes = new Uint8Array(into.buffer, into.byteOffset, into.byteLength);
  let off = 0;
  while (off < bytes.length) {
    const n = readSync(fd, bytes, off, bytes.length - off, position + off);
    if (n === 0) throw new Error(`internal: the feature scratch file ended early at byte ${position + off}`);
    off += n;
  }
}

/** Puts examples (filled in row order) back in the heap's ranking. */
function reorder(filled: ContextExample[], ranking: Example[]): ContextExample[] {
  const key = (r: number, p: number) => r * 2 ** 21 + p;
  const byKey = new Map(filled.map((e) => [key(e.row, e.pos), e]));
  return ranking.map((x) => byKey.get(key(x.row, x.pos))!);
}

/** The 3 signed-largest entries of the unit-norm row, with |v| / L1 of the row. */
function alignment(row: Float32Array): { indices: number[]; values: number[]; l1: number[] } {
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

/** Histogram helper re-exported for the brute-force tests and the export. */
export { histogram };
