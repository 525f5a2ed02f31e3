/**
 * What `--resume` checks before it touches anything: every state file of the checkpoint is
 * validated (errors name the file and the field), and the run's settings must equal the saved
 * `config.json` except for the few that do not change what is trained (RESUME_MAY_CHANGE).
 */
import { assertRegularFile, ConfigError, FileFormatError, Tensor } from '@sparsify/core';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { STATE_FILE } from './run-folder.js';
import { trainConfigJson, type RunConfig, type TrainConfig } from './train-config.js';

export const STATE_FORMAT = 'sparsify-node-trainer/1';

/** config.json keys that may differ on resume: bookkeeping, logging and access, not the training itself. */
export const RESUME_MAY_CHANGE: readonly string[] = [
  'save_every',
  'save_best',
  'log_to_wandb',
  'wandb_log_frequency',
  'run_name',
  'save_dir',
  'resume',
  'hf_token',
  'data_preprocessing_num_proc',
  'distribute_modules',
  'finetune',
];

export interface TrainerState {
  global_step: number;
  step: number;
  tokens: number;
  k: number;
  coders: string[];
  optimizer: string;
  best_loss: Record<string, number | null>;
}

/** Parses a JSON file; the error names the file and the position, never the content. */
export function readJsonFile(path: string, what: string): unknown {
  assertRegularFile(path, what);
  let text: string;
  try {
    text = readFileSync(path, 'utf-8');
  } catch (e) {
    throw new FileFormatError(`${path}: cannot read ${what} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    // V8's messages quote the text near the error; keep only the position.
    const pos = /position (\d+)/.exec((e as Error).message)?.[1];
    throw new FileFormatError(`${path}: ${what} is not valid JSON${pos ? ` (at byte ${pos})` : ''}`);
  }
}

/** Validates trainer_state.json against the run (coder names, batch counts, optimizer). */
export function readTrainerState(dir: string, run: { coders: string[]; totalBatches: number; gradAccSteps: number; optimizer: string }): TrainerState {
  const file = join(dir, STATE_FILE);
  const s = readJsonFile(file, 'the trainer state') as Record<string, unknown>;
  const bad = (field: string, why: string) => new FileFormatError(`${file}: field '${field}' ${why}`);
  if (s === null || typeof s !== 'object' || Array.isArray(s)) throw new FileFormatError(`${file}: not a JSON object`);
  if (s.format !== STATE_FORMAT) throw bad('format', `must be "${STATE_FORMAT}", got ${JSON.stringify(s.format)}`);
  const count = (field: string, max: number) => {
    const v = s[field];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(field, `must be a non-negative integer, got ${JSON.stringify(v)}`);
    if (v > max) throw bad(field, `is ${v}, more than this run has (${max})`);
    return v;
  };
  const globalStep = count('global_step', run.totalBatches);
  const step = count('step', Math.floor(run.totalBatches / run.gradAccSteps));
  if (step !== Math.floor(globalStep / run.gradAccSteps))
    throw bad('step', `is ${step}, but global_step ${globalStep} with grad_acc_steps ${run.gradAccSteps} means ${Math.floor(globalStep / run.gradAccSteps)}`);
  const tokens = count('tokens', Number.MAX_SAFE_INTEGER);
  const k = count('k', Number.MAX_SAFE_INTEGER);
  if (!Array.isArray(s.coders) || !s.coders.every((c) => typeof c === 'string')) throw bad('coders', 'must be a list of names');
  if (JSON.stringify(s.coders) !== JSON.stringify(run.coders))
    throw new ConfigError(`${file}: the checkpoint has coders ${JSON.stringify(s.coders)}, this run has ${JSON.stringify(run.coders)}`);
  if (s.optimizer !== run.optimizer) throw new ConfigError(`${file}: the checkpoint was trained with optimizer ${JSON.stringify(s.optimizer)}, this run uses "${run.optimizer}" (--optimizer)`);
  const best = s.best_loss ?? {};
  if (typeof best !== 'object' || Array.isArray(best)) throw bad('best_loss', 'must be an object');
  for (const [name, v] of Object.entries(best as Record<string, unknown>))
    if (v !== null && (typeof v !== 'number' || !(v >= 0))) throw bad(`best_loss.${name}`, `must be a number >= 0 or null, got ${JSON.stringify(v)}`);
  return { global_step: globalStep, step, tokens, k, coders: s.coders as string[], optimizer: s.optimizer as string, best_loss: best as Record<string, number | null> };
}

/** Refuses a resume whose settings differ from the saved config.json (ConfigError naming the settings). */
export function checkResumeConfig(dir: string, cfg: TrainConfig | RunConfig): void {
  const file = join(dir, 'config.json');
  if (!existsSync(file)) throw new FileFormatError(`${file}: missing (the run's settings)`);
  const saved = readJsonFile(file, 'the run config') as Record<string, unknown>;
  if (saved === null || typeof saved !== 'object' || Array.isArray(saved)) throw new FileFormatError(`${file}: not a JSON object`);
  const now = JSON.parse(trainConfigJson(cfg)) as Record<string, unknown>;
  const diffs: string[] = [];
  const compare = (a: Record<string, unknown>, b: Record<string, unknown>, prefix: string) => {
    for (const key of Object.keys(b)) {
      if (!(key in a) || RESUME_MAY_CHANGE.includes(key)) continue;
      if (key === 'sae' && a.sae && typeof a.sae === 'object') {
        compare(a.sae as Record<string, unknown>, b.sae as Record<string, unknown>, '');
        continue;
      }
      if (JSON.stringify(a[key]) !== JSON.stringify(b[key]))
        diffs.push(`--${prefix}${key} ${JSON.stringify(b[key])} (the run has ${JSON.stringify(a[key])})`);
    }
  };
  compare(saved, now, '');
  if (diffs.length)
    throw new ConfigError(
      `--resume: settings differ from the saved run (${file}): ${diffs.join('; ')}. ` +
        `Resume with the run's settings, or start a new run with another --run_name. May change on resume: ${RESUME_MAY_CHANGE.filter((k) => k !== 'resume').join(', ')}`,
    );
}

/** Dead-latent counters of one coder: the right length, whole non-negative counts. */
export function checkCounters(file: string, name: string, counts: Float64Array | undefined, numLatents: number): Float64Array {
  if (!counts) throw new FileFormatError(`${file}: no counters for '${name}'`);
  if (counts.length !== numLatents) throw new FileFormatError(`${file}: '${name}' has ${counts.length} counters, the coder has ${numLatents} latents`);
  for (let i = 0; i < counts.length; i++)
    if (!(counts[i] >= 0)) throw new FileFormatError(`${file}: '${name}'[${i}] is ${counts[i]}; counters must be >= 0`);
  return counts;
}

const GROUP_SCALARS: Record<string, string[]> = { adam: ['step'], muon: ['step'], signum: ['k', 'lr_max', 'weight_sum'] };

/** The structure an optimizer state file must decode to (OptimizerState of @sparsify/core). */
export function checkOptimizerState(file: string, state: unknown, kind: string): void {
  const bad = (field: string, why: string) => new FileFormatError(`${file}: field '${field}' ${why}`);
  if (state === null || typeof state !== 'object' || Array.isArray(state)) throw new FileFormatError(`${file}: not an optimizer state object`);
  const s = state as Record<string, unknown>;
  if (s.kind !== kind) throw bad('kind', `must be "${kind}" (this run's optimizer), got ${JSON.stringify(s.kind)}`);
  if (!(s.tensors instanceof Map)) throw bad('tensors', 'is missing or not a tensor map');
  for (const [key, t] of s.tensors) if (!(t instanceof Tensor)) throw bad(`tensors.${String(key)}`, 'is not a tensor');
  const sc = s.scalars as Record<string, unknown> | undefined;
  if (!sc || typeof sc !== 'object') throw bad('scalars', 'is missing');
  if (!Array.isArray(sc.lr) || sc.lr.length !== 1 || !sc.lr.every((x) => typeof x === 'number' && Number.isFinite(x) && x > 0))
    throw bad('scalars.lr', `must be a list of one positive number, got ${JSON.stringify(sc.lr)}`);
  if (!Array.isArray(sc.groups) || sc.groups.length !== 1) throw bad('scalars.groups', 'must be a list of one object');
  const g = sc.groups[0] as Record<string, unknown>;
  if (g === null || typeof g !== 'object' || Array.isArray(g)) throw bad('scalars.groups.0', 'must be an object');
  for (const key of GROUP_SCALARS[kind] ?? []) if (!(key in g)) throw bad(`scalars.groups.0.${key}`, `is missing (a ${kind} state has ${GROUP_SCALARS[kind].join(', ')})`);
  for (const [key, v] of Object.entries(g))
    if (typeof v !== 'number' || Number.isNaN(v) || v < 0) throw bad(`scalars.groups.0.${key}`, `must be a number >= 0, got ${JSON.stringify(v)}`);
  if (typeof sc.trainMode !== 'boolean') throw bad('scalars.trainMode', `must be true or false, got ${JSON.stringify(sc.trainMode)}`);
}
