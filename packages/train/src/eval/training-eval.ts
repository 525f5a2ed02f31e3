/**
 * Evaluation during training: every `every` optimizer steps the current coders are evaluated on a
 * held-out slice (rows taken from the end of the dataset and left out of training), the fields go
 * to metrics.jsonl as `eval/{coder}/{field}`, and the run's end writes `eval.json` in the run
 * folder. `bestMetric: 'ce_loss_score'` makes save_best keep the coders with the best score.
 */
import { ConfigError, DatasetError, writeFileAtomic } from '@sparsify/core';
import { join } from 'node:path';

import type { FieldSpec } from '../train-config.js';
import { evaluate, type EvalCoder, type EvalDataset, type EvalModel, type EvalReport } from './evaluate.js';

export type BestMetric = 'fvu' | 'ce_loss_score';
export const BEST_METRICS: readonly BestMetric[] = ['fvu', 'ce_loss_score'];

export interface TrainingEvalOptions {
  /** The held-out rows (see holdOutTail). */
  dataset: EvalDataset;
  /** Evaluate every n optimizer steps (0 or absent: only at the end). */
  every?: number;
  /** Rows per forward (default: 8). */
  batchSize?: number;
  excludeTokens?: readonly number[];
  /** What save_best ranks by (default 'fvu', the training FVU; 'ce_loss_score' from the latest evaluation). */
  bestMetric?: BestMetric;
  modelName?: string;
  datasetName?: string;
}

/** The first `length - n` rows for training and the last `n` for evaluation. */
export function holdOutTail<D extends EvalDataset>(dataset: D, n: number): { train: EvalDataset; heldOut: EvalDataset } {
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`eval_examples must be a positive integer, got ${n}`);
  if (n >= dataset.length)
    throw new DatasetError(`eval_examples ${n} leaves nothing to train on: the dataset has ${dataset.length} sequences`);
  const cut = dataset.length - n;
  const view = (offset: number, length: number): EvalDataset => ({
    length,
    ctxLen: dataset.ctxLen,
    rows: (idx) => {
      for (const i of idx) if (i < 0 || i >= length) throw new DatasetError(`row ${i} is outside [0, ${length})`);
      return dataset.rows(Int32Array.from(idx, (i) => i + offset));
    },
  });
  return { train: view(0, cut), heldOut: view(cut, n) };
}

/** Numeric fields of a report, flattened as `eval/{coder}/{field}` and `eval/all/{field}`. */
export function evalMetricsRecord(report: EvalReport): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, h] of Object.entries(report.hookpoints))
    for (const [k, v] of Object.entries(h)) if (typeof v === 'number') out[`eval/${name}/${k}`] = v;
  for (const [k, v] of Object.entries(report.all)) out[`eval/all/${k}`] = v;
  out['eval/ce_loss_clean'] = report.ce_loss_clean;
  out['eval/tokens'] = report.tokens;
  return out;
}

export class TrainingEvaluator {
  /** The most recent evaluation. */
  latest: EvalReport | undefined;
  readonly every: number;
  readonly bestMetric: BestMetric;

  constructor(
    private readonly opts: TrainingEvalOptions,
    private readonly model: EvalModel,
  ) {
    this.every = opts.every ?? 0;
    if (!Number.isInteger(this.every) || this.every < 0) throw new ConfigError(`eval_every must be a non-negative integer, got ${opts.every}`);
    this.bestMetric = opts.bestMetric ?? 'fvu';
    if (!BEST_METRICS.includes(this.bestMetric)) throw new ConfigError(`best_metric must be one of ${BEST_METRICS.join(', ')}, got ${JSON.stringify(opts.bestMetric)}`);
    if (!opts.dataset || opts.dataset.length < 1) throw new DatasetError('evaluation during training needs a non-empty held-out dataset');
  }

  due(step: number): boolean {
    return this.every > 0 && step % this.every === 0;
  }

  async run(coders: readonly { name: string; coder: unknown }[]): Promise<EvalReport> {
    const map = new Map(coders.map((e) => [e.name, e.coder as EvalCoder]));
    this.latest = await evaluate(this.model, map, this.opts.dataset, {
      batchSize: this.opts.batchSize,
      excludeTokens: this.opts.excludeTokens,
      modelName: this.opts.modelName,
      datasetName: this.opts.datasetName,
    });
    return this.latest;
  }

  /** The metrics.jsonl record of an evaluation at `step`. */
  async stepRecord(step: number, coders: readonly { name: string; coder: unknown }[]): Promise<Record<string, unknown>> {
    const r = await this.run(coders);
    return { step, ...evalMetricsRecord(r) };
  }

  /**
   * What save_best minimises for a coder: its training FVU, or minus its latest ce_loss_score
   * (undefined: no evaluation yet, so nothing to compare).
   */
  bestValue(name: string, fvu: number): number | undefined {
    if (this.bestMetric === 'fvu') return fvu;
    const h = this.latest?.hookpoints[name];
    return h && Number.isFinite(h.ce_loss_score) ? -h.ce_loss_score : undefined;
  }

  /** Evaluates the final coders and writes `runDir/eval.json` (atomically). */
  async writeFinal(runDir: string, coders: readonly { name: string; coder: unknown }[]): Promise<EvalReport> {
    const r = await this.run(coders);
    writeFileAtomic(join(runDir, 'eval.json'), [JSON.stringify(r, null, 2) + '\n']);
    return r;
  }
}

/** Held-out rows used when only --eval_every is given. */
export const DEFAULT_EVAL_EXAMPLES = 64;

/** The training flags of evaluation (`sparsify train --eval_every ...`); not part of sparsify's config.json. */
export const EVAL_TRAIN_FIELDS = [
  { field: 'evalEvery', key: 'eval_every', kind: 'int', help: 'evaluate on the held-out rows every n optimizer steps (0: only at the end)' },
  {
    field: 'evalExamples',
    key: 'eval_examples',
    kind: 'int',
    help: `held-out sequences from the end of the dataset, excluded from training (0: ${DEFAULT_EVAL_EXAMPLES} when --eval_every is set, else no evaluation)`,
  },
  { field: 'bestMetric', key: 'best_metric', kind: 'enum', choices: BEST_METRICS, help: 'what --save_best ranks by' },
] as const satisfies readonly FieldSpec[];

export interface EvalTrainFlags {
  evalEvery: number;
  evalExamples: number;
  bestMetric: BestMetric;
}

export const DEFAULT_EVAL_TRAIN_FLAGS: Readonly<EvalTrainFlags> = Object.freeze({ evalEvery: 0, evalExamples: 0, bestMetric: 'fvu' });

/** How many rows to hold out for these flags (0: no evaluation). */
export function heldOutRows(f: Partial<EvalTrainFlags>): number {
  if (f.evalExamples && f.evalExamples > 0) return f.evalExamples;
  if (f.evalEvery && f.evalEvery > 0) return DEFAULT_EVAL_EXAMPLES;
  if (f.bestMetric === 'ce_loss_score') throw new ConfigError('--best_metric ce_loss_score needs an evaluation: give --eval_every and/or --eval_examples');
  return 0;
}
