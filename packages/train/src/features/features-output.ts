/**
 * The features output folder: `index.json` (what was run, token counts, where the tokenizer and
 * the coders are), `vocab.json` (each token id as the page shows it), `tokenizer.json` (copied,
 * to decode without the model) and `<name>/features.jsonl` + `<name>/summary.json` per coder.
 * A new output is built in a sibling folder and swapped in, so an existing output is either left
 * whole or replaced whole; a folder that is not a features output is never replaced.
 */
import { closeSync, existsSync, openSync, readFileSync, readSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

import { ConfigError, FileFormatError } from '@sparsify/core';

import { SUMMARY_FILE, type FeatureRecord, type FeatureSummaryFile } from './feature-record.js';

export const FEATURES_INDEX = 'index.json';
export const FEATURES_FORMAT = 'sparsify-features';

export interface FeaturesIndex {
  format: typeof FEATURES_FORMAT;
  version: 1;
  /** As given (folder or hub id), and the local folder it resolved to. */
  model: string;
  model_dir: string;
  /** The run folder the coders came from (null when given coder folders directly). */
  run: string | null;
  dataset: string;
  rows: number;
  ctx_len: number;
  /** All positions, and the evaluated ones (positions whose token is not in ignore_tokens). */
  positions: number;
  tokens: number;
  ignore_tokens: number[];
  settings: { top: number; intervals: number; interval_size: number; histogram_bins: number; logit_rows: number; window: number; seed: number; shuffle_seed: number | null };
  logit_effects: string;
  vocab_size: number;
  /** Files in this folder: the display strings by id, and the tokenizer (null without one). */
  vocab: string;
  tokenizer: string | null;
  hookpoints: {
    name: string;
    hookpoint: string;
    coder_dir: string;
    num_latents: number;
    k: number;
    transcode: boolean;
    dead: number;
    logit_effects: boolean;
    features: string;
    summary: string;
  }[];
  created: string;
}

/** A sibling folder to build a new output in; throws when `out` exists and is not a features output. */
export function beginFeaturesOutput(out: string): string {
  const dir = resolve(out);
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new ConfigError(`--out ${out}: exists and is not a folder`);
    const entries = readdirSync(dir);
    if (entries.length > 0 && !existsSync(join(dir, FEATURES_INDEX)))
      throw new ConfigError(`--out ${out}: the folder exists and is not a features output (no ${FEATURES_INDEX}); choose another --out`);
  }
  // Builds left by killed runs (their process is gone) are removed; a live one's is left alone.
  if (existsSync(dirname(dir)))
    for (const name of readdirSync(dirname(dir))) {
      const m = new RegExp(`^\\.${escapeRegExp(basename(dir))}\\.(?:building|previous)-(\\d+)$`).exec(name);
      if (m && (Number(m[1]) === process.pid || !alive(Number(m[1])))) rmSync(join(dirname(dir), name), { recursive: true, force: true });
    }
  return join(dirname(dir), `.${basename(dir)}.building-${process.pid}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Swaps the finished build in place of `out`. */
export function finishFeaturesOutput(building: string, out: string): void {
  const dir = resolve(out);
  const previous = join(dirname(dir), `.${basename(dir)}.previous-${process.pid}`);
  if (existsSync(dir)) renameSync(dir, previous);
  renameSync(building, dir);
  rmSync(previous, { recursive: true, force: true });
}

function readJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf-8');
  } catch (e) {
    throw new FileFormatError(`cannot read ${path}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new FileFormatError(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

export function readFeaturesIndex(dir: string): FeaturesIndex {
  const path = join(dir, FEATURES_INDEX);
  if (!existsSync(path)) throw new FileFormatError(`${dir}: not a features output (no ${FEATURES_INDEX}; make one with 'sparsify features')`);
  const idx = readJson(path) as FeaturesIndex;
  if (!idx || idx.format !== FEATURES_FORMAT || !Array.isArray(idx.hookpoints)) throw new FileFormatError(`${path}: not a ${FEATURES_FORMAT} index`);
  return idx;
}

/** Random access to one coder's features.jsonl through its summary's line offsets. */
export class FeatureFile {
  readonly summary: FeatureSummaryFile;
  private readonly path: string;

  constructor(dir: string, name: string) {
    this.path = join(dir, name, 'features.jsonl');
    this.summary = readJson(join(dir, name, SUMMARY_FILE)) as FeatureSummaryFile;
    if (!this.summary || !Array.isArray(this.summary.offsets) || this.summary.offsets.length !== this.summary.num_latents + 1)
      throw new FileFormatError(`${join(dir, name, SUMMARY_FILE)}: malformed (offsets must have num_latents + 1 entries)`);
  }

  get numLatents(): number {
    return this.summary.num_latents;
  }

  read(index: number): FeatureRecord {
    if (!Number.isInteger(index) || index < 0 || index >= this.numLatents) throw new RangeError(`latent ${index} is outside [0, ${this.numLatents})`);
    const start = this.summary.offsets[index];
    const buf = Buffer.alloc(this.summary.offsets[index + 1] - start);
    const fd = openSync(this.path, 'r');
    try {
      let off = 0;
      while (off < buf.length) {
        const n = readSync(fd, buf, off, buf.length - off, start + off);
        if (n === 0) throw new FileFormatError(`${this.path}: shorter than its summary says`);
        off += n;
      }
    } finally {
      closeSync(fd);
    }
    try {
      return JSON.parse(buf.toString('utf-8')) as FeatureRecord;
    } catch (e) {
      throw new FileFormatError(`${this.path}: line ${index + 1} is not valid JSON (${(e as Error).message})`);
    }
  }
}
