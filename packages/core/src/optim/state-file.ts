/**
 * Optimizer state files: safetensors with the state tensors (`<group>.<param>.<slot>`, F32) and
 * one metadata key `sparsify_optimizer` holding {kind, lr, groups, trainMode} as JSON (one key,
 * so files are byte-reproducible). Written atomically.
 */
import { jsonErrorSummary } from '../json-error.js';
import { FileFormatError } from '../errors.js';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors } from '../safetensors.js';
import type { OptimizerState } from './optimizer.js';

export const OPTIMIZER_METADATA_KEY = 'sparsify_optimizer';

export function saveOptimizerState(path: string, state: OptimizerState): void {
  saveSafetensors(path, state.tensors, { [OPTIMIZER_METADATA_KEY]: JSON.stringify({ kind: state.kind, ...state.scalars }) });
}

/** Reads a file written by saveOptimizerState (tensors are memory-mapped; loadStateDict copies them). */
export function loadOptimizerState(path: string): OptimizerState {
  const header = readSafetensorsHeader(path);
  const raw = header.metadata?.[OPTIMIZER_METADATA_KEY];
  if (typeof raw !== 'string') throw new FileFormatError(`${path}: no '${OPTIMIZER_METADATA_KEY}' metadata (not an optimizer state file)`);
  let meta: { kind?: unknown; lr?: unknown; groups?: unknown; trainMode?: unknown };
  try {
    meta = JSON.parse(raw);
  } catch (e) {
    throw new FileFormatError(`${path}: invalid '${OPTIMIZER_METADATA_KEY}' metadata (${jsonErrorSummary(e)})`);
  }
  if (!['adam', 'signum', 'muon'].includes(meta.kind as string) || !Array.isArray(meta.lr) || !Array.isArray(meta.groups))
    throw new FileFormatError(`${path}: '${OPTIMIZER_METADATA_KEY}' metadata lacks kind / lr / groups`);
  return {
    kind: meta.kind as OptimizerState['kind'],
    tensors: loadSafetensors(path),
    scalars: { lr: meta.lr as number[], groups: meta.groups as Record<string, number>[], trainMode: meta.trainMode !== false },
  };
}
