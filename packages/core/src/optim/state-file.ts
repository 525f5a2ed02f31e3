/**
 * Optimizer state files (a run folder's `optimizer_<i>.*`): `<base>.safetensors` holds the state
 * tensors, keyed by their path in the state, and `<base>.json` the structure (kind, lr, per-group
 * scalars, train mode) with {"$tensor": key} placeholders, written like Python's json. No pickles.
 * The encoding takes any nesting of objects, arrays, Maps, numbers (non-finite ones too),
 * strings and Tensors.
 */
import { existsSync, readFileSync } from 'node:fs';

import { FileFormatError } from '../errors.js';
import { jsonErrorSummary } from '../json-error.js';
import { pyJson } from '../py-json.js';
import { loadSafetensors, saveSafetensors, writeFileAtomic } from '../safetensors.js';
import { Tensor } from '../tensor.js';
import type { OptimizerState } from './optimizer.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function encode(v: unknown, path: string, tensors: Map<string, Tensor>): Json {
  if (v instanceof Tensor) {
    tensors.set(path, v);
    return { $tensor: path };
  }
  if (v === undefined || v === null) return null;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return { $number: String(v) };
    return v;
  }
  if (typeof v === 'boolean' || typeof v === 'string') return v;
  if (typeof v === 'bigint') return { $bigint: v.toString() };
  if (v instanceof Map) return { $map: [...v.entries()].map(([k, x], i) => [encode(k, `${path}.${i}k`, tensors), encode(x, `${path}.${String(k)}`, tensors)]) };
  if (Array.isArray(v)) return v.map((x, i) => encode(x, `${path}.${i}`, tensors));
  if (ArrayBuffer.isView(v)) return { $typed: (v as unknown as { constructor: { name: string } }).constructor.name, data: Array.from(v as unknown as ArrayLike<number>) };
  if (typeof v === 'object') {
    const out: Record<string, Json> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[k] = encode(x, path ? `${path}.${k}` : k, tensors);
    return out;
  }
  throw new FileFormatError(`optimizer state: cannot store a ${typeof v} at '${path}'`);
}

const TYPED: Record<string, new (a: number[]) => ArrayLike<number>> = {
  Float32Array: Float32Array as never,
  Float64Array: Float64Array as never,
  Int32Array: Int32Array as never,
  Uint8Array: Uint8Array as never,
  Uint32Array: Uint32Array as never,
};

function decode(v: Json, tensors: Map<string, Tensor>, file: string): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map((x) => decode(x, tensors, file));
  if (typeof v.$tensor === 'string') {
    const t = tensors.get(v.$tensor);
    if (!t) throw new FileFormatError(`${file}: missing tensor '${v.$tensor}'`);
    return t.clone(); // loaded tensors are read-only file mappings; the optimizer updates in place
  }
  if (typeof v.$number === 'string') return Number(v.$number);
  if (typeof v.$bigint === 'string') return BigInt(v.$bigint);
  if (Array.isArray(v.$map)) return new Map((v.$map as Json[][]).map(([k, x]) => [decode(k, tensors, file), decode(x, tensors, file)]));
  if (typeof v.$typed === 'string') {
    const C = TYPED[v.$typed];
    if (!C) throw new FileFormatError(`${file}: unknown typed array ${v.$typed}`);
    return new C(v.data as number[]);
  }
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = decode(x, tensors, file);
  return out;
}

/** Writes `state` as `<base>.safetensors` + `<base>.json` (each atomically). */
export function saveOptimizerState(base: string, state: OptimizerState): void {
  const tensors = new Map<string, Tensor>();
  const structure = encode(state, '', tensors);
  saveSafetensors(`${base}.safetensors`, tensors);
  writeFileAtomic(`${base}.json`, [pyJson(structure)]);
}

/** What saveOptimizerState wrote, decoded but not checked (callers with their own checks; tensors are private copies). */
export function readOptimizerStateFile(base: string): unknown {
  const jsonPath = `${base}.json`;
  if (!existsSync(jsonPath)) throw new FileFormatError(`${jsonPath}: missing (optimizer state)`);
  let structure: Json;
  try {
    structure = JSON.parse(readFileSync(jsonPath, 'utf-8')) as Json;
  } catch (e) {
    throw new FileFormatError(`${jsonPath}: ${jsonErrorSummary(e)}`);
  }
  const tensors = existsSync(`${base}.safetensors`) ? loadSafetensors(`${base}.safetensors`) : new Map<string, Tensor>();
  const state = decode(structure, tensors, `${base}.safetensors`);
  for (const t of tensors.values()) t.dispose();
  return state;
}

/** Reads what saveOptimizerState wrote (tensors are private copies, ready for loadStateDict). */
export function loadOptimizerState(base: string): OptimizerState {
  const state = readOptimizerStateFile(base) as Partial<OptimizerState> | null;
  if (!state || typeof state.kind !== 'string' || !(state.tensors instanceof Map) || typeof state.scalars !== 'object' || !Array.isArray(state.scalars?.groups))
    throw new FileFormatError(`${base}.json: not an optimizer state (needs kind, tensors and scalars.groups)`);
  return state as OptimizerState;
}
