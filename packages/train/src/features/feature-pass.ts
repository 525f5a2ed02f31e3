/**
 * The feature pass: for every latent of every coder, its top-activating contexts, interval
 * samples, firing statistics, activation histogram and logit effects, from one streaming pass of
 * the model over a dataset.
 *
 * Memory stays bounded by latents x kept examples: the model runs once; each batch's k-sparse
 * codes are folded into per-latent statistics and top-K heaps (LatentStats) and appended to a
 * scratch file (ScratchCodes: tokens x k entries, never tokens x latents). Two scans of that file
 * then draw the interval samples and the histograms (both need each latent's max) and cut the
 * context windows of the kept examples. Activations are the coder's k-sparse code (`encode`); a
 * latent fires at a token when its activation there is > 0. Tokens in `ignoreTokens` (BOS/EOS/pad
 * by default in the CLI) count as not evaluated: they never fire and show 0 in windows.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { ShapeError, Tensor, ValueError, writeFileAtomic, type Unembedding } from '@sparsify/core';

import type { LanguageModel } from '@sparsify/core';

import type { TokenDatasetLike } from '../trainer.js';
import { fillWindows, type WindowRequest } from './context-windows.js';
import { neuronAlignment, r6, recordJson, SUMMARY_FILE, type ContextExample, type FeatureRecord, type FeatureSummaryFile } from './feature-record.js';
import { IntervalSamples } from './interval-samples.js';
import { LatentStats } from './latent-stats.js';
import { binIndex, logitEffects, type LogitEffects } from './logit-effects.js';
import { ScratchCodes } from './scratch-codes.js';
import type { Example } from './top-examples.js';


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

interface Settings {
  K: number;
  bins: number;
  intervals: number;
  intervalSize: number;
  window: number;
  seed: number;
  logitRows: number;
}

/**
 * Runs the pass and writes `outDir/<name>/features.jsonl` and `summary.json` for every coder (one
 * JSON object per latent, in index order; each file written under a temporary name, then renamed).
 */
export async function runFeaturePass(
  coders: readonly FeatureCoderEntry[],
  model: LanguageModel,
  dataset: TokenDatasetLike,
  outDir: string,
  opts: FeaturePassOptions,
): Promise<FeaturePassSummary> {
  const set: Settings = {
    K: opts.top ?? 20,
    bins: opts.histogramBins ?? 50,
    intervals: opts.intervals ?? 5,
    intervalSize: opts.intervalSize ?? 5,
    window: opts.window ?? 64,
    seed: opts.seed ?? 0,
    logitRows: opts.logitRows ?? 10,
  };
  const B = opts.batchSize ?? 8;
  const T = dataset.ctxLen;
  const R = dataset.length;
  if (R === 0) throw new ValueError('runFeaturePass: the dataset has no rows');
  if (coders.length === 0) throw new ValueError('runFeaturePass: no coders');
  for (const { name, hookpoint, coder } of coders) {
    // Checked before the pass so that the error names the coder and its hookpoint.
    const w = coder.cfg.transcode ? model.inputWidth(hookpoint) : model.width(hookpoint);
    if (w !== coder.dIn)
      throw new ShapeError(`features: coder '${name}' has d_in ${coder.dIn}, but '${hookpoint}' ${coder.cfg.transcode ? 'takes' : 'outputs'} ${w} features`);
  }
  const ignore = new Set(opts.ignoreTokens ?? []);
  const scratch = new ScratchCodes(opts.scratchDir, coders.length, T, ignore);
  const stats = coders.map((c) => new LatentStats(c.coder.numLatents, set.K));
  const hookpoints = [...new Set(coders.map((c) => c.hookpoint))];
  const captureInputs = coders.some((c) => c.coder.cfg.transcode);
  const seconds = { forward: 0, stream: 0, rescan: 0, logits: 0, output: 0 };
  const timed = async <T>(key: keyof typeof seconds, f: () => Promise<T> | T): Promise<T> => {
    const t0 = performance.now();
    try {
      return await f();
    } finally {
      seconds[key] += (performance.now() - t0) / 1000;
    }
  };
  let evaluated = 0;
  try {
    // Pass 1: the model forward, the codes into the statistics, the heaps and the scratch file.
    const started = performance.now();
    for (let lo = 0; lo < R; lo += B) {
      const n = Math.min(B, R - lo);
      const ids = Int32Array.from(await dataset.rows(Array.from({ length: n }, (_, i) => lo + i)));
      scratch.appendTokens(ids);
      const ignored = new Uint8Array(n * T);
      for (let t = 0; t < n * T; t++) if (ignore.has(ids[t])) ignored[t] = 1;
      for (const v of ignored) evaluated += 1 - v;
      const input = Tensor.from(ids, [n, T]);
      const out = await timed('forward', () => model.forward(input, { hookpoints, captureInputs }));
      input.dispose();
      try {
        for (const [c, { coder, hookpoint }] of coders.entries()) {
          const x = coder.cfg.transcode ? out.capturedInputs?.get(hookpoint) : out.captured.get(hookpoint);
          if (!x) throw new Error(`internal: the forward captured no ${coder.cfg.transcode ? 'input' : 'output'} of ${hookpoint}`);
          const enc = await timed('forward', () => coder.encode(x));
          const idx = enc.topIndices.toInt32Array();
          const act = enc.topActs.toFloat32Array();
          const k = enc.topIndices.shape[1];
          enc.topIndices.dispose();
          enc.topActs.dispose();
          scratch.appendCodes(c, idx, act, k);
          stats[c].add(idx, act, k, ignored, lo, T);
        }
      } finally {
        for (const t of out.captured.values()) t.dispose();
        for (const t of out.capturedInputs?.values() ?? []) t.dispose();
      }
      opts.onProgress?.(lo + n, R);
    }
    seconds.stream = (performance.now() - started) / 1000 - seconds.forward;
    const summary: FeaturePassSummary = { rows: R, ctxLen: T, positions: R * T, tokens: evaluated, coders: [], seconds };
    for (const [c, entry] of coders.entries()) {
      const s = stats[c];
      const readRow = scratch.reader(c);
      const k = scratch.k[c];
      // Pass 2 (over the scratch codes): histograms and interval samples, which need each max.
      const { hist, samples } = await timed('rescan', () => rescan(s, readRow, R, k, set));
      const M = entry.coder.numLatents;
      const wDec = entry.coder.params().get('W_dec')?.toFloat32Array();
      const D = entry.coder.dIn;
      const effects = await timed('logits', () =>
        opts.unembedding && wDec && opts.unembedding.weight.shape[1] === D ? logitEffects(wDec, M, opts.unembedding, set.logitRows, set.bins) : undefined,
      );
      // Pass 3: records with their context windows, in blocks of latents.
      const build = (i: number, want: (ex: Example, into: ContextExample[]) => void) =>
        buildRecord(i, s, hist, samples, evaluated, set.bins, effects?.[i], wDec ? neuronAlignment(wDec.subarray(i * D, (i + 1) * D)) : undefined, want);
      await timed('output', () => writeFeatureFile(join(outDir, entry.name), s, build, readRow, T, k, set, evaluated));
      const dead = s.count.reduce((n, x) => n + (x === 0 ? 1 : 0), 0);
      summary.coders.push({ name: entry.name, hookpoint: entry.hookpoint, numLatents: M, k, transcode: entry.coder.cfg.transcode, dead, logitEffects: !!effects });
    }
    return summary;
  } finally {
    scratch.remove();
  }
}

/** Histogram counts [M * bins] and interval samples from one scan of a coder's scratch codes. */
function rescan(s: LatentStats, readRow: ReturnType<ScratchCodes['reader']>, R: number, k: number, set: Settings) {
  const { bins } = set;
  const hist = new Float64Array(s.numLatents * bins);
  const samples = new IntervalSamples(s.numLatents, set.intervals, set.intervalSize, s.max, set.seed);
  for (let row = 0; row < R; row++) {
    const { idx, act, ignored } = readRow(row);
    for (let e = 0; e < idx.length; e++) {
      const a = act[e];
      const t = (e / k) | 0;
      if (!(a > 0) || ignored[t]) continue;
      const i = idx[e];
      hist[i * bins + binIndex(a, s.minFiring[i], s.max[i] - s.minFiring[i], bins)]++;
      samples.offer(i, a, row, t);
    }
  }
  return { hist, samples };
}

/** One latent's record without its windows; `want` queues each example for its window. */
function buildRecord(
  i: number,
  s: LatentStats,
  hist: Float64Array,
  samples: IntervalSamples,
  evaluated: number,
  bins: number,
  effects: LogitEffects | undefined,
  alignment: FeatureRecord['neuron_alignment'] | undefined,
  want: (ex: Example, into: ContextExample[]) => void,
): FeatureRecord {
  const count = s.count[i];
  const rec: FeatureRecord = {
    index: i,
    frac_nonzero: evaluated ? r6(count / evaluated) : 0,
    count,
    max_act: r6(s.max[i]),
    mean_act: count ? r6(s.sum[i] / count) : 0,
    top: [],
    quantiles: [],
    histogram: { min: count ? r6(s.minFiring[i]) : 0, max: r6(s.max[i]), counts: Array.from(hist.subarray(i * bins, (i + 1) * bins)) },
    logits: effects
      ? {
          pos: effects.pos.map((x) => ({ token: x.token, value: r6(x.value) })),
          neg: effects.neg.map((x) => ({ token: x.token, value: r6(x.value) })),
          histogram: { min: r6(effects.histogram.min), max: r6(effects.histogram.max), counts: effects.histogram.counts },
        }
      : { pos: [], neg: [] },
    neuron_alignment: alignment ?? { indices: [], values: [], l1: [] },
  };
  for (const ex of s.top.sorted(i)) want(ex, rec.top);
  if (count > 0)
    for (const g of samples.groups(i)) {
      const group = { lo: r6(g.lo), hi: r6(g.hi), contains: evaluated ? g.count / evaluated : 0, count: g.count, examples: [] as ContextExample[] };
      rec.quantiles.push(group);
      for (const ex of g.examples) want(ex, group.examples);
    }
  return rec;
}

/** Writes `dir/features.jsonl` (records in blocks of latents, so windows stay bounded) and `dir/summary.json`. */
function writeFeatureFile(
  dir: string,
  s: LatentStats,
  build: (i: number, want: (ex: Example, into: ContextExample[]) => void) => FeatureRecord,
  readRow: ReturnType<ScratchCodes['reader']>,
  T: number,
  k: number,
  set: Settings,
  evaluated: number,
): void {
  const M = s.numLatents;
  const W = Math.min(T, set.window);
  // About 32 MB of window numbers per block.
  const block = Math.max(1, Math.floor((1 << 25) / ((set.K + set.intervals * set.intervalSize) * W * 8)));
  const file = join(dir, 'features.jsonl');
  mkdirSync(dirname(file), { recursive: true });
  const fd = openSync(file + '.partial', 'w');
  const offsets: number[] = [];
  let offset = 0;
  try {
    for (let lo = 0; lo < M; lo += block) {
      const requests = new Map<number, WindowRequest[]>();
      const records: FeatureRecord[] = [];
      for (let i = lo; i < Math.min(M, lo + block); i++)
        records.push(
          build(i, (ex, into) => {
            if (!requests.has(ex.row)) requests.set(ex.row, []);
            requests.get(ex.row)!.push({ latent: i, ex, into });
          }),
        );
      fillWindows(requests, readRow, T, W, k);
      for (const rec of records) {
        // Windows were filled in row order: put each list back into its ranking.
        rec.top = reorder(rec.top, s.top.sorted(rec.index));
        for (const g of rec.quantiles) g.examples.sort((a, b) => b.act - a.act || a.row - b.row || a.pos - b.pos);
        const line = Buffer.from(recordJson(rec) + '\n');
        offsets.push(offset);
        offset += line.length;
        writeSync(fd, line);
      }
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(file + '.partial', file);
  offsets.push(offset);
  const body: FeatureSummaryFile = {
    num_latents: M,
    count: Array.from(s.count),
    frac_nonzero: Array.from(s.count, (c) => (evaluated ? r6(c / evaluated) : 0)),
    max_act: Array.from(s.max, r6),
    mean_act: Array.from(s.count, (c, i) => (c ? r6(s.sum[i] / c) : 0)),
    offsets,
  };
  writeFileAtomic(join(dir, SUMMARY_FILE), [JSON.stringify(body)]);
}

/** Puts examples (filled in row order) back in the heap's ranking. */
function reorder(filled: ContextExample[], ranking: Example[]): ContextExample[] {
  const key = (r: number, p: number) => r * 2 ** 21 + p;
  const byKey = new Map(filled.map((e) => [key(e.row, e.pos), e]));
  return ranking.map((x) => byKey.get(key(x.row, x.pos))!);
}
