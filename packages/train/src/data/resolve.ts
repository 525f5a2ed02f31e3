/**
 * Which files a dataset spec means (reference 6.2, `load_dataset(spec, split=...)` with
 * `Dataset.load_from_disk` as fallback): a data file, a folder of data files (split chosen from
 * the file names like HF's default patterns: `train.jsonl`, `data/train-00000-of-00001.parquet`,
 * `train/...`), an HF `save_to_disk` folder (Dataset or DatasetDict), or a hub dataset id whose
 * files are fetched into the HF cache first.
 */
import { assertRegularFile } from '@sparsify/core';
import { jsonErrorSummary } from '@sparsify/core';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

import { DatasetError, HubError, fnmatch, naturalSort, snapshotDownload, type HubOptions } from '@sparsify/core';

import type { DataArgValue } from './data_args.js';

import { formatOf, type FileFormat } from './sources.js';

export interface ResolvedFiles {
  files: string[];
  format: FileFormat;
  /** What was resolved, for messages. */
  description: string;
}

const KNOWN_SPLITS = ['train', 'training', 'test', 'testing', 'eval', 'evaluation', 'validation', 'valid', 'val', 'dev'];
/** HF's keywords per split name (datasets.data_files.SPLIT_KEYWORDS). */
const SPLIT_KEYWORDS: Record<string, string[]> = {
  train: ['train', 'training'],
  validation: ['validation', 'valid', 'dev', 'val'],
  test: ['test', 'testing', 'eval', 'evaluation'],
};
const DATA_PATTERNS = ['*.parquet', '*.arrow', '*.jsonl', '*.ndjson', '*.json', '*.txt'];

function splitRegExp(split: string): RegExp {
  const words = (SPLIT_KEYWORDS[split] ?? [split]).map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`(^|[-._ 0-9/])(${words.join('|')})([-._ 0-9/]|$)`);
}

function listDataFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name.startsWith('.')) continue; // .cache, .git, .huggingface
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (formatOf(e.name)) out.push(relative(dir, p));
    }
  };
  walk(dir);
  return naturalSort(out);
}

function readJson(path: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(path, 'utf-8')) as Record<string, unknown>;
  } catch (e) {
    throw new DatasetError(`${path} is not valid JSON (${jsonErrorSummary(e)})`);
  }
}

/** `Dataset.save_to_disk` folder: state.json lists the Arrow stream files in order. */
function savedDatasetFiles(dir: string): ResolvedFiles {
  const state = readJson(join(dir, 'state.json'));
  const dataFiles = state._data_files as { filename?: string }[] | undefined;
  if (!Array.isArray(dataFiles) || dataFiles.length === 0) throw new DatasetError(`${join(dir, 'state.json')} lists no _data_files`);
  const files = dataFiles.map((f) => {
    const p = join(dir, String(f.filename));
    if (!existsSync(p)) throw new DatasetError(`save_to_disk folder ${dir}: data file ${p} listed in state.json is missing`);
    return p;
  });
  return { files, format: 'arrow', description: `save_to_disk folder ${dir}` };
}

/**
 * Narrows a folder by HF load_dataset arguments from --data_args: `data_dir` (a subfolder),
 * `name` (a config stored as a subfolder, as hub repos with several configs do), `data_files`
 * (an fnmatch pattern relative to the folder; `*` also crosses "/").
 */
function applyDataArgs(dir: string, args: Record<string, DataArgValue>, what: string): [string, string | undefined] {
  for (const key of ['data_dir', 'name'] as const) {
    if (args[key] === undefined) continue;
    const sub = join(dir, String(args[key]));
    if (!existsSync(sub) || !statSync(sub).isDirectory()) throw new DatasetError(`${what} has no folder '${String(args[key])}' (from data_args ${key})`);
    dir = sub;
  }
  return [dir, args.data_files === undefined ? undefined : String(args.data_files)];
}

function folderFiles(dir0: string, split: string, what: string, args: Record<string, DataArgValue> = {}): ResolvedFiles {
  const [dir, dataFiles] = applyDataArgs(dir0, args, what);
  if (dataFiles !== undefined) {
    const files = listDataFiles(dir).filter((f) => fnmatch(f, dataFiles));
    if (files.length === 0) throw new DatasetError(`${what}: no data file matches data_files '${dataFiles}'`);
    const format = formatOf(files[0])!;
    return { files: files.filter((f) => formatOf(f) === format).map((f) => join(dir, f)), format, description: `${what} (data_files '${dataFiles}')` };
  }
  if (existsSync(join(dir, 'dataset_dict.json'))) {
    const splits = (readJson(join(dir, 'dataset_dict.json')).splits as string[] | undefined) ?? [];
    if (!splits.includes(split)) throw new DatasetError(`${what} has no split '${split}' (it has: ${splits.join(', ')})`);
    return savedDatasetFiles(join(dir, split));
  }
  if (existsSync(join(dir, 'state.json'))) return savedDatasetFiles(dir);
  const all = listDataFiles(dir);
  if (all.length === 0) throw new DatasetError(`${what} contains no data files (.txt, .jsonl, .json, .parquet, .arrow)`);
  const re = splitRegExp(split);
  let chosen = all.filter((f) => re.test(f));
  if (chosen.length === 0) {
    const hasSplits = all.some((f) => KNOWN_SPLITS.some((s) => splitRegExp(s).test(f)));
    // HF: files without split names all belong to "train".
    if (split === 'train' && !hasSplits) chosen = all;
    else throw new DatasetError(`${what} has no files for split '${split}' (files: ${all.slice(0, 20).join(', ')}${all.length > 20 ? ', ...' : ''})`);
  }
  // Like HF, the most common format among the chosen files decides the reader.
  const counts = new Map<FileFormat, number>();
  for (const f of chosen) counts.set(formatOf(f)!, (counts.get(formatOf(f)!) ?? 0) + 1);
  const format = [...counts.entries()].sort((a, b) => b[1] - a[1])[0][0];
  return { files: chosen.filter((f) => formatOf(f) === format).map((f) => join(dir, f)), format, description: `${what} (split '${split}')` };
}

function hubPatterns(split: string, args: Record<string, DataArgValue>): string[] {
  if (args.data_files !== undefined) return [[args.data_dir, args.name, args.data_files].filter((x) => x !== undefined).join('/')];
  const words = SPLIT_KEYWORDS[split] ?? [split];
  return [...words.flatMap((w) => [`${w}/*`, `*/${w}/*`, `*${w}[-._ 0-9]*`]), 'dataset_dict.json', '*state.json'];
}

export interface ResolveOptions {
  split: string;
  /** Parsed --data_args (data_dir, name, data_files are used here). */
  dataArgs?: Record<string, DataArgValue>;
  revision?: string;
  hub?: HubOptions;
}

export async function resolveDataFiles(spec: string, opts: ResolveOptions): Promise<ResolvedFiles> {
  const r = await resolveDataFilesUnchecked(spec, opts);
  for (const f of r.files) assertRegularFile(f, 'a dataset file', DatasetError);
  return r;
}

async function resolveDataFilesUnchecked(spec: string, opts: ResolveOptions): Promise<ResolvedFiles> {
  if (existsSync(spec)) {
    if (statSync(spec).isDirectory()) return folderFiles(spec, opts.split, `folder ${spec}`, opts.dataArgs);
    const format = formatOf(spec);
    if (!format) throw new DatasetError(`${spec}: unknown dataset file type (supported: .bin, .txt, .jsonl, .json, .parquet, .arrow, or a folder)`);
    if (opts.split !== 'train') throw new DatasetError(`${spec} is a single file, which only has the split 'train' (got --split ${opts.split})`);
    return { files: [spec], format, description: spec };
  }
  const looksLikePath = spec.startsWith('.') || spec.startsWith('/') || formatOf(spec) !== undefined;
  if (looksLikePath || !/^[\w.-]+(\/[\w.-]+)?$/.test(spec))
    throw new DatasetError(`dataset file or folder ${spec} does not exist${looksLikePath ? '' : ', and it is not a hub dataset id (org/name)'}`);
  const hubOpts: HubOptions = { ...opts.hub, repoType: 'dataset', revision: opts.revision ?? opts.hub?.revision };
  let dir: string;
  try {
    dir = await snapshotDownload(spec, { ...hubOpts, allowPatterns: hubPatterns(opts.split, opts.dataArgs ?? {}) });
  } catch (e) {
    if (!(e instanceof HubError)) throw e;
    if (opts.split !== 'train') {
      if (/match/.test(e.message)) throw new DatasetError(`hub dataset ${spec}: no files for split '${opts.split}' (${e.message})`);
      throw e;
    }
    // No file named after the split: HF puts every data file into "train".
    dir = await snapshotDownload(spec, { ...hubOpts, allowPatterns: DATA_PATTERNS });
  }
  return folderFiles(dir, opts.split, `hub dataset ${spec}`, opts.dataArgs);
}
