/**
 * Sparse-coder folders in sparsify's format (reference 9.1):
 *   <dir>/cfg.json          SparseCoderConfig + d_in (see config.ts for the exact bytes)
 *   <dir>/sae.safetensors   encoder.weight [M,D], encoder.bias [M], W_dec [M,D], b_dec [D], W_skip [D,D]?
 * Reading accepts F32/BF16/F16 and validates names and shapes against cfg.json; writing is F32-
 * or whatever dtype the tensors have, atomic per file.
 */
import { assertRegularFile } from './regular-file.js';
import { jsonErrorSummary } from './json-error.js';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { CODER_PARAM_NAMES, coderParamShapes } from './coder-params.js';
import { coderConfigFromJson, coderConfigJson, coderSpecProblem, numLatentsOf, type SparseCoderConfig } from './config.js';
import { ConfigError, FileFormatError } from './errors.js';
import { fnmatch } from './hub.js';
import { naturalSort } from './natsort.js';
import { writeFolderFiles } from './folder-write.js';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors, writeFileAtomic } from './safetensors.js';
import type { DType, Tensor } from './tensor.js';

export interface CoderFiles {
  cfg: SparseCoderConfig;
  dIn: number;
  numLatents: number;
  /**
   * The coder's dtype as sparsify decides it: the dtype of the first tensor name in sorted order
   * (W_dec, else b_dec, PR #116). load_model then casts every tensor to it; `tensors` keep their
   * own file dtypes, so a caller that wants sparsify's behaviour casts them to this.
   */
  dtype: DType;
  /** Present tensors by safetensors name, in the file's dtype (memory-mapped). */
  tensors: Map<string, Tensor>;
}

const FLOAT_DTYPES: Partial<Record<string, DType>> = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' };

export function readCoderConfig(dir: string): { cfg: SparseCoderConfig; dIn: number } {
  const path = join(dir, 'cfg.json');
  if (!existsSync(dir)) throw new FileFormatError(`${dir}: no such folder`);
  if (!existsSync(path)) throw new FileFormatError(`${dir}: no cfg.json (not a sparse coder folder)`);
  let text: string;
  assertRegularFile(path, 'a coder config');
  try {
    text = readFileSync(path, 'utf-8');
  } catch (e) {
    throw new FileFormatError(`${path}: cannot read: ${(e as Error).message}`);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${path}: ${jsonErrorSummary(e)}`);
  }
  return coderConfigFromJson(obj, path);
}

/**
 * Reads cfg.json and sae.safetensors and checks them against each other: every tensor present
 * with the shape cfg.json implies, float dtype (F32, BF16, F16), k <= num_latents (and
 * num_latents divisible by k for groupmax). With decoder = false, W_dec is neither required
 * nor loaded (sparsify's load_from_disk(decoder=False)). Tensor names that sparsify does not
 * know are ignored; W_skip without skip_connection is an error.
 */
export function readCoderDir(dir: string, opts: { decoder?: boolean } = {}): CoderFiles {
  const decoder = opts.decoder ?? true;
  const { cfg, dIn } = readCoderConfig(dir);
  const M = numLatentsOf(cfg, dIn);
  const cfgPath = join(dir, 'cfg.json');
  // multi_topk's 4k <= M is checked where the 4k selection is made: such a file still encodes.
  const problem = coderSpecProblem({ ...cfg, multiTopk: false }, M);
  if (problem) throw new ConfigError(`${cfgPath}: ${problem}`);
  for (const w of cfg.matryoshkaPrefixes) if (w > M) throw new ConfigError(`${cfgPath}: matryoshka_prefixes: ${w} is larger than num_latents=${M}`);
  const file = join(dir, 'sae.safetensors');
  if (!existsSync(file)) throw new FileFormatError(`${dir}: no sae.safetensors`);
  const header = readSafetensorsHeader(file);
  const expected = coderParamShapes(cfg, dIn, M, { decoder });
  for (const [name, shape] of expected) {
    const info = header.tensors.get(name);
    if (!info) throw new FileFormatError(`${file}: missing tensor '${name}' (expected shape [${shape.join(', ')}])`);
    if (!FLOAT_DTYPES[info.dtype])
      throw new FileFormatError(`${file}: tensor '${name}' has dtype ${info.dtype}; expected F32, BF16 or F16`);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i]))
      throw new FileFormatError(
        `${file}: tensor '${name}' has shape [${info.shape.join(', ')}] but cfg.json (d_in=${dIn}, num_latents=${M}) needs [${shape.join(', ')}]`,
      );
  }
  if (header.tensors.has('W_skip') && !cfg.skipConnection && decoder)
    throw new FileFormatError(`${file}: has tensor 'W_skip' but cfg.json says skip_connection=false`);
  const refName = [...header.tensors.keys()].filter((n) => (CODER_PARAM_NAMES as readonly string[]).includes(n)).sort()[0];
  const dtype = FLOAT_DTYPES[header.tensors.get(refName)!.dtype];
  if (!dtype) throw new FileFormatError(`${file}: tensor '${refName}' has dtype ${header.tensors.get(refName)!.dtype}; expected F32, BF16 or F16`);
  const tensors = loadSafetensors(file, { names: [...expected.keys()] });
  return { cfg, dIn, numLatents: M, dtype, tensors };
}

/** Writes sae.safetensors and cfg.json (the files sparsify's save_to_disk writes) as a pair (folder-write.ts). */
export function writeCoderDir(dir: string, cfg: SparseCoderConfig, dIn: number, tensors: Map<string, Tensor>): void {
  const text = coderConfigJson(cfg, dIn);
  writeFolderFiles(dir, [
    { name: 'sae.safetensors', write: (p) => saveSafetensors(p, tensors) },
    { name: 'cfg.json', write: (p) => writeFileAtomic(p, [text]) },
  ]);
}

const SEED_DIR = /^seed\d+$/;

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory(); // follows symlinks
  } catch {
    return false;
  }
}

/**
 * The sparse coders under root, as names relative to root, in natsort order: every sub-folder
 * that holds a cfg.json (`h.0`, `layers.10`), and for multi-seed runs, which sparsify saves as
 * `<hook>/seed<N>/`, one name per seed (`h.0/seed0`, `h.0/seed1`). Folders without cfg.json
 * (`.huggingface`, `.cache`, a checkpoint's `best/`) and hidden folders are skipped: sparsify's load_many would try
 * to load them and crash. `pattern` is an fnmatch pattern matched against the name or, for a
 * seed folder, against the hookpoint part alone (`h.0` selects both seeds of h.0); unlike
 * sparsify's load_many, which turns the pattern into `pattern/*` and so never matches a folder
 * name, the filter works.
 */
export function listCoderDirs(root: string, pattern?: string): string[] {
  if (!isDir(root)) throw new FileFormatError(`${root}: not a folder`);
  const names: string[] = [];
  for (const e of readdirSync(root)) {
    const dir = join(root, e);
    // Hidden folders are never coders: a killed save's temporary sibling (folder-write.ts) may hold a cfg.json.
    if (e.startsWith('.') || !isDir(dir)) continue;
    if (existsSync(join(dir, 'cfg.json'))) {
      if (!pattern || fnmatch(e, pattern)) names.push(e);
      continue;
    }
    for (const s of readdirSync(dir)) {
      if (!SEED_DIR.test(s) || !isDir(join(dir, s)) || !existsSync(join(dir, s, 'cfg.json'))) continue;
      const name = `${e}/${s}`;
      if (!pattern || fnmatch(name, pattern) || fnmatch(e, pattern)) names.push(name);
    }
  }
  return naturalSort(names);
}
