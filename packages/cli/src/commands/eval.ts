/**
 * `sparsify eval <coders> <model> [dataset] [--flags]`: the coders (a run folder, one coder's
 * folder or a hub repo) spliced into the model, scored on the dataset's rows in order (see
 * docs/eval.md). Prints a table; `--json FILE` writes the report. Also the held-out split that
 * `sparsify train --eval_every/--eval_examples` uses.
 */
import * as core from '@sparsify/core';
import { FileFormatError, SparseCoder, type ThresholdCoder } from '@sparsify/core';
import { loadLocalCoder } from './load-coder.js';
import * as train from '@sparsify/train';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';

import { resolveDevice } from '../device.js';
import { parseTrainArgs, UsageError, type ParsedTrainArgs } from '../flags.js';
import type { Output } from '../progress.js';

/** Flags of `train` that mean something to `eval` (the dataset, batching and device ones). */
const EVAL_FLAGS = new Set([
  'ctx_len',
  'max_examples',
  'batch_size',
  'text_column',
  'split',
  'data_args',
  'exclude_tokens',
  'shuffle_seed',
  'hookpoints',
  'hf_token',
  'revision',
  'data_preprocessing_num_proc',
  'device',
  'compute_dtype',
]);

/** eval's own defaults where train's would be too much for logits (see docs/eval.md). */
export const EVAL_DEFAULTS = { batchSize: 4, maxExamples: 64 };

export const EVAL_USAGE = `usage: sparsify eval <coders> <model> [dataset] [--flags]

Splices the sparse coders into the model and reports, per hookpoint and with all of them at once,
cross-entropy and KL against the clean model (with zero and mean ablation for scale), and
reconstruction and sparsity at the hookpoint. Rows are read in dataset order.

positional arguments:
  coders    a run folder (one coder per hookpoint), one coder's folder, or a hub repo
  model     model folder or hub id (needs an LM head)
  dataset   dataset folder/file or hub id (default: ${train.DEFAULT_RUN_FIELDS.dataset})

options (as for sparsify train):
  --ctx_len int               tokens per sequence (default ${train.DEFAULT_RUN_FIELDS.ctxLen})
  --max_examples int          sequences to evaluate (default ${EVAL_DEFAULTS.maxExamples})
  --batch_size int            sequences per forward (default ${EVAL_DEFAULTS.batchSize})
  --exclude_tokens int ...    token ids left out of every average
  --shuffle_seed int          shuffle the rows first (default: dataset order)
  --hookpoints str ...        evaluate only the coders whose names match these patterns
  --split, --text_column, --data_args, --data_preprocessing_num_proc, --revision, --hf_token
  --device {auto,cpu,cuda}    where the model runs (default auto)
  --compute_dtype {f32,bf16}  the TopK coders' encoder product (default f32; bf16: CPU, opt-in)
  --json FILE                 also write the report as JSON
`;

/** Splits `--json FILE` from the rest of the argv. */
function takeJson(argv: readonly string[]): { rest: string[]; json?: string } {
  const rest: string[] = [];
  let json: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') {
      json = argv[++i];
      if (json === undefined || json.startsWith('--')) throw new UsageError('--json: missing file name');
    } else if (a.startsWith('--json=')) json = a.slice('--json='.length);
    else rest.push(a);
  }
  if (json === '') throw new UsageError('--json: missing file name');
  return { rest, json };
}

/** Coder name -> folder: the folder itself (named by its hookpoint), or its coder subfolders (`{hook}/seedN` too). */
function localCoderDirs(root: string): Map<string, string> {
  const out = new Map<string, string>();
  if (existsSync(join(root, 'cfg.json'))) {
    out.set(basename(resolve(root)), root);
    return out;
  }
  const dirs = (d: string) =>
    core.naturalSort(
      readdirSync(d, { withFileTypes: true })
        .filter((e) => e.isDirectory() && !e.name.startsWith('.') && e.name !== 'best' && e.name !== 'train_iterate')
        .map((e) => e.name),
    );
  for (const name of dirs(root)) {
    if (existsSync(join(root, name, 'cfg.json'))) out.set(name, join(root, name));
    else for (const sub of dirs(join(root, name))) if (/^seed\d+$/.test(sub) && existsSync(join(root, name, sub, 'cfg.json'))) out.set(`${name}/${sub}`, join(root, name, sub));
  }
  if (out.size === 0) throw new FileFormatError(`${root}: no sparse coders found (no cfg.json in it or in its subfolders)`);
  return out;
}

/** --compute_dtype bf16 applies to TopK / GroupMax coders (the encoder GEMM); other kinds refuse it. */
function setComputeDtype(coders: Map<string, SparseCoder | ThresholdCoder>, dtype: 'f32' | 'bf16'): void {
  for (const [name, c] of coders) {
    if (c instanceof SparseCoder) c.computeDtype = dtype;
    else if (dtype !== 'f32') throw new UsageError(`--compute_dtype ${dtype}: ${name} is not a TopK / GroupMax coder; only those have a bf16 mode`);
  }
}

async function loadCoders(spec: string, patterns: readonly string[], device: core.Device): Promise<Map<string, SparseCoder | ThresholdCoder>> {
  const keep = (name: string) => patterns.length === 0 || patterns.some((p) => core.fnmatchToRegExp(p).test(name));
  const out = new Map<string, SparseCoder | ThresholdCoder>();
  try {
    if (existsSync(spec) && statSync(spec).isDirectory()) {
      for (const [name, dir] of localCoderDirs(spec)) if (keep(name)) out.set(name, await loadLocalCoder(dir, device));
    } else {
      for (const [name, c] of await SparseCoder.loadMany(spec, { device })) {
        if (keep(name)) out.set(name, c);
        else c.dispose();
      }
    }
  } catch (e) {
    for (const c of out.values()) c.dispose();
    throw e;
  }
  if (out.size === 0) throw new UsageError(`no coder of ${spec} matches --hookpoints ${patterns.join(' ')}`);
  return out;
}

async function openEvalDataset(args: ParsedTrainArgs, cfg: train.RunConfig, model: core.LanguageModel): Promise<train.TokenDatasetLike> {
  const modelDir = model.path;
  const tokenizer = existsSync(join(modelDir, 'tokenizer.json')) ? await core.loadTokenizer(modelDir) : undefined;
  return train.openTokenDataset(cfg.dataset, {
    tokenizer,
    ctxLen: cfg.ctxLen,
    split: cfg.split,
    textColumn: cfg.textColumn,
    dataArgs: cfg.dataArgs,
    // Dataset order unless a seed is asked for, so that the numbers can be reproduced elsewhere.
    shuffleSeed: args.given.has('shuffle_seed') ? cfg.shuffleSeed : null,
    maxExamples: cfg.maxExamples ?? EVAL_DEFAULTS.maxExamples,
    revision: cfg.revision ?? undefined,
    vocabSize: model.vocabSize,
    maxPositions: model.maxPositions,
    numProc: cfg.dataPreprocessingNumProc,
    hub: cfg.hfToken ? { token: cfg.hfToken } : undefined,
  });
}

const fmt = (v: number, digits = 4) => (Number.isFinite(v) ? v.toFixed(digits) : String(v));

/** The report as a table: one row per coder, then all coders at once. */
export function formatEvalTable(r: train.EvalReport): string {
  const head = ['hookpoint', 'ce_spliced', 'delta_ce', 'ce_score', 'kl_spliced', 'kl_score', 'fvu', 'expl_var', 'l0', 'dead%'];
  const rows = [head];
  for (const [name, h] of Object.entries(r.hookpoints))
    rows.push([
      name + (h.transcoder ? ' (tc)' : ''),
      fmt(h.ce_loss_spliced),
      fmt(h.delta_ce),
      fmt(h.ce_loss_score),
      fmt(h.kl_div_spliced),
      fmt(h.kl_div_score),
      fmt(h.fvu),
      fmt(h.explained_variance),
      fmt(h.l0, 1),
      fmt(h.dead_fraction * 100, 2),
    ]);
  if (Object.keys(r.hookpoints).length > 1)
    rows.push(['all', fmt(r.all.ce_loss_spliced), fmt(r.all.delta_ce), fmt(r.all.ce_loss_score), fmt(r.all.kl_div_spliced), fmt(r.all.kl_div_score), '', '', '', '']);
  const w = head.map((_, c) => Math.max(...rows.map((x) => x[c].length)));
  const lines = [
    `${r.model} on ${r.dataset}: ${r.tokens.toLocaleString('en-US')} tokens (${r.rows} x ${r.ctx_len}), clean CE ${fmt(r.ce_loss_clean)}`,
    ...rows.map((x) => x.map((s, c) => (c === 0 ? s.padEnd(w[c]) : s.padStart(w[c]))).join('  ').trimEnd()),
    `${fmt(r.elapsed_s, 1)} s, ${Math.round(r.tokens_per_s).toLocaleString('en-US')} tok/s`,
  ];
  return lines.join('\n') + '\n';
}

export async function evalCommand(argv: readonly string[], io: { stdout: Output; stderr: Output }): Promise<number> {
  const { rest, json } = takeJson(argv);
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout.write(EVAL_USAGE);
    return 0;
  }
  // The first positional is the coders; the rest parses like train's [model] [dataset] [--flags].
  const first = rest.findIndex((a) => !a.startsWith('-'));
  if (first !== 0) throw new UsageError('eval: expected <coders> <model> [dataset] first');
  const coderSpec = rest[0];
  const args = parseTrainArgs(rest.slice(1));
  for (const key of args.given) if (!EVAL_FLAGS.has(key)) throw new UsageError(`eval: --${key} is a training flag; sparsify eval --help lists its flags`);
  if (!args.model) throw new UsageError('eval: expected <coders> <model> [dataset]');
  const cfg = train.runConfig({ ...args.init, batchSize: args.init.batchSize ?? EVAL_DEFAULTS.batchSize });
  const device = resolveDevice(args.device, (s) => io.stderr.write(s));
  const model = await core.loadModel(cfg.model, { device, revision: cfg.revision ?? undefined });
  const coders = await loadCoders(coderSpec, cfg.hookpoints, 'cpu');
  try {
    setComputeDtype(coders, args.computeDtype);
    const dataset = await openEvalDataset(args, cfg, model);
    const tty = !!io.stderr.isTTY;
    const report = await train.evaluate(model, coders, dataset, {
      batchSize: cfg.batchSize,
      excludeTokens: cfg.excludeTokens,
      modelName: cfg.model,
      datasetName: cfg.dataset,
      onProgress: tty
        ? (p) => io.stderr.write(`\reval ${p.rows}/${p.totalRows} rows | ${Math.round((p.rows * dataset.ctxLen) / Math.max(1e-9, p.elapsedSec)).toLocaleString('en-US')} tok/s`)
        : undefined,
    });
    if (tty) io.stderr.write('\n');
    if (json) core.writeFileAtomic(json, [JSON.stringify(report, null, 2) + '\n']);
    io.stdout.write(formatEvalTable(report));
    return 0;
  } finally {
    for (const c of coders.values()) c.dispose();
    model.dispose();
  }
}

/**
 * The held-out split of `sparsify train --eval_every/--eval_examples`: the training rows and the
 * Trainer's evaluation options (undefined when evaluation is off).
 */
export function trainingEvaluation(
  args: ParsedTrainArgs,
  cfg: train.RunConfig,
  dataset: train.TokenDatasetLike,
): { dataset: train.TokenDatasetLike; evaluation?: train.TrainingEvalOptions } {
  const n = train.heldOutRows(args.evaluation);
  if (n === 0) return { dataset };
  const { train: rows, heldOut } = train.holdOutTail(dataset, n);
  return {
    dataset: rows,
    evaluation: {
      dataset: heldOut,
      every: args.evaluation.evalEvery ?? 0,
      bestMetric: args.evaluation.bestMetric,
      excludeTokens: cfg.excludeTokens,
      batchSize: Math.min(cfg.batchSize, EVAL_DEFAULTS.batchSize * 2),
      modelName: cfg.model,
      datasetName: `${cfg.dataset} (last ${n} sequences, held out)`,
    },
  };
}
