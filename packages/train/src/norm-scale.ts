/**
 * normalize_activations `expected_average_only_in` in the trainer: the per-hookpoint scale s from
 * a read pass over the first n batches (SAELens 6.18 training/activation_scaler.py: the mean over
 * n_batches_for_norm_estimate batches of each batch's mean token norm, s = sqrt(d_in) / that),
 * and `activation_scaler.json` ({hookpoint: s}), which checkpoints hold so that resume reads s back.
 */
import { ConfigError, FileFormatError, Tensor } from '@sparsify/core';
import { existsSync } from 'node:fs';

import { readJsonFile } from './resume-check.js';
import { NormScaleEstimate } from './saelens-schedules.js';
import { gatherRows } from './train-ops.js';

export const ACTIVATION_SCALER_FILE = 'activation_scaler.json';

/** One batch's captures (per hookpoint the coder input) and, with exclude_tokens, the rows kept. */
export interface NormBatch {
  acts: { captured: Map<string, Tensor>; capturedInputs?: Map<string, Tensor> };
  keep?: Tensor;
  nKeep: number;
}

/** s per hookpoint over batches 0..n-1 (`read(b)` gives batch b; its tensors are disposed here). */
export async function estimateNormScales(hookpoints: readonly string[], n: number, read: (b: number) => Promise<NormBatch>): Promise<Map<string, number>> {
  const est = new Map<string, NormScaleEstimate>();
  for (let b = 0; b < n; b++) {
    const { acts, keep, nKeep } = await read(b);
    try {
      for (const hook of hookpoints) {
        const x = acts.captured.get(hook);
        if (!x) throw new ConfigError(`normalize_activations: model.forward did not capture '${hook}'`);
        if (x.device !== 'cpu') throw new ConfigError('--normalize_activations expected_average_only_in: CPU activations only for now');
        if (keep && nKeep === 0) continue; // every token excluded
        const rows = keep ? await gatherRows(x, keep) : x;
        try {
          if (!est.has(hook)) est.set(hook, new NormScaleEstimate(x.shape[1]));
          est.get(hook)!.add(rows.toFloat32Array());
        } finally {
          if (rows !== x) rows.dispose();
        }
      }
    } finally {
      for (const t of acts.captured.values()) t.dispose();
      for (const t of acts.capturedInputs?.values() ?? []) t.dispose();
      keep?.dispose();
    }
  }
  const out = new Map<string, number>();
  for (const hook of hookpoints) {
    const e = est.get(hook);
    if (!e) throw new ConfigError(`--normalize_activations: no tokens of the first ${n} batches reach '${hook}' (all excluded?); raise --n_batches_for_norm_estimate`);
    out.set(hook, e.factor());
  }
  return out;
}

/** The scales of a checkpoint, one finite s > 0 for every hookpoint of the run. */
export function readActivationScaler(file: string, hookpoints: readonly string[]): Map<string, number> {
  if (!existsSync(file)) throw new FileFormatError(`${file}: missing (the activation scales of a --normalize_activations run)`);
  const d = readJsonFile(file, 'the activation scales');
  if (d === null || typeof d !== 'object' || Array.isArray(d)) throw new FileFormatError(`${file}: not a JSON object of hookpoint -> scale`);
  const o = d as Record<string, unknown>;
  const out = new Map<string, number>();
  for (const hook of hookpoints) {
    const s = o[hook];
    if (typeof s !== 'number' || !Number.isFinite(s) || !(s > 0)) throw new FileFormatError(`${file}: field '${hook}' must be a finite number > 0, got ${JSON.stringify(s)}`);
    out.set(hook, s);
  }
  return out;
}
