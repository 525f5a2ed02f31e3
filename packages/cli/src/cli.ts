/**
 * The `sparsify` command.
 *   sparsify train [model] [dataset] [--flags]   train sparse coders (see `sparsify train --help`)
 *   sparsify hookpoints <model>                  list a model's hookpoint names and widths
 *   sparsify info <checkpoint dir>               list the sparse coders in a folder
 *   sparsify info --native                       the native addon and the CPU kernels it runs
 *   sparsify eval <coders> <model> [dataset]     evaluate coders spliced into the model (commands/eval.ts)
 *   sparsify features <run folder> [model] [dataset]   per-latent top contexts (commands/features.ts)
 *   sparsify view [features dir]                 the local feature browser (commands/view.ts)
 * Exit codes: 0 ok, 1 runtime error, 2 usage error, 130 interrupted (checkpoint saved).
 */
import * as core from '@sparsify/core';
import { ConfigError, SparsifyError, readCoderConfig, readSafetensorsHeader, numLatentsOf } from '@sparsify/core';
import * as train from '@sparsify/train';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { convertCommand } from './commands/convert.js';
import { writeTlHookpoints, type TlListing } from './commands/hookpoints-tl.js';
import { pretokenizeCommand } from './commands/pretokenize.js';
import { saeLensInfoRow } from './commands/info-saelens.js';
import { evalCommand, trainingEvaluation } from './commands/eval.js';
import { resolveDevice, type DeviceFlag } from './device.js';
import { checkGemmEnv, nativeInfoText } from './native-info.js';
import { parseTrainArgs, trainHelp, UsageError } from './flags.js';
import { Progress, formatDuration, type Output } from './progress.js';
import { featuresCommand } from './commands/features.js';
import { viewCommand } from './commands/view.js';

export { parseTrainArgs, trainHelp, UsageError } from './flags.js';

export interface CliIO {
  stdout: Output;
  stderr: Output;
  /** Installs an interrupt handler; returns a function that removes it. */
  onInterrupt?: (handler: () => void) => () => void;
}

const defaultIO = (): CliIO => ({
  stdout: process.stdout,
  stderr: process.stderr,
  onInterrupt: (h) => {
    process.on('SIGINT', h);
    return () => process.off('SIGINT', h);
  },
});

const USAGE = `usage: sparsify <command> [options]

commands:
  train [model] [dataset] [--flags]   train sparse autoencoders / transcoders (sparsify train --help)
  hookpoints <model> [--device d] [--names hf|tl]   hookpoint names and widths (tl: TransformerLens aliases)
  info <dir>                          list the sparse coders in a checkpoint folder
  info --native                       the native addon, threads and CPU GEMM kernels in use
  convert --to saelens|sparsify SRC DST   a coder (or run) folder in the other format
  pretokenize DATASET --out DIR [--ctx_len T]   tokenize once into a folder train (and SAELens) reads
  eval <coders> <model> [dataset]     CE/KL and reconstruction with the coders spliced in (sparsify eval --help)
  features <run> [model] [dataset]    top contexts, statistics and logit effects of every latent (sparsify features --help)
  view [features dir] [--port 8080]   the feature browser on http://127.0.0.1 (sparsify view --help)
`;

export async function main(argv: readonly string[], io: CliIO = defaultIO()): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'train':
        checkGemmEnv();
        return await trainCommand(rest, io);
      case 'hookpoints':
        checkGemmEnv();
        return await hookpointsCommand(rest, io);
      case 'info':
        return await infoCommand(rest, io);
      case 'eval':
        checkGemmEnv();
        return await evalCommand(rest, io);
      case 'features':
        return await featuresCommand(rest, io);
      case 'view':
        return await viewCommand(rest, io);
      case 'convert':
        return await convertCommand(rest, io);
      case 'pretokenize':
        return await pretokenizeCommand(rest, io);
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        io.stdout.write(USAGE);
        return cmd === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`sparsify: error: ${e.message}\n`);
      if (cmd !== 'train' && cmd !== 'features' && cmd !== 'view') io.stderr.write(USAGE);
      return 2;
    }
    if (e instanceof ConfigError) {
      io.stderr.write(`sparsify: error: ${e.message}\n`);
      return 2;
    }
    if (e instanceof SparsifyError) {
      io.stderr.write(`sparsify: error: ${e.message}\n`);
      return 1;
    }
    if (e instanceof RangeError && /array length|allocation failed|out of memory/i.test(e.message)) {
      io.stderr.write(`sparsify: error: out of memory (${e.message}); use smaller --batch_size, --ctx_len or coders\n`);
      return 1;
    }
    const sys = describeSystemError(e);
    if (sys) {
      io.stderr.write(`sparsify: error: ${sys}\n`);
      return 1;
    }
    io.stderr.write(`sparsify: unexpected error: ${(e as Error)?.stack ?? String(e)}\n`);
    return 1;
  }
}

/** Splits `--device X` from simple commands' argv. */
function simpleArgs(argv: readonly string[], what: string): { positional: string[]; device: DeviceFlag } {
  const positional: string[] = [];
  let device: DeviceFlag = 'auto';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--device' || a.startsWith('--device=')) {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (v !== 'auto' && v !== 'cpu' && v !== 'cuda') throw new UsageError(`--device: expected auto, cpu or cuda, got ${JSON.stringify(v)}`);
      device = v;
    } else if (a.startsWith('-')) throw new UsageError(`${what}: unknown flag ${a}`);
    else positional.push(a);
  }
  return { positional, device };
}

async function loadModelFrom(pathOrRepo: string, opts: { device: core.Device; revision?: string | null }): Promise<core.LanguageModel> {
  return core.loadModel(pathOrRepo, { device: opts.device, revision: opts.revision ?? undefined });
}

async function hookpointsCommand(argv: readonly string[], io: CliIO): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout.write('usage: sparsify hookpoints <model> [--device auto|cpu|cuda] [--names hf|tl]\n');
    return 0;
  }
  const namesAt = argv.findIndex((a) => a === '--names' || a.startsWith('--names='));
  const names = namesAt < 0 ? 'hf' : argv[namesAt].includes('=') ? argv[namesAt].split('=')[1] : argv[namesAt + 1];
  if (names !== 'hf' && names !== 'tl') throw new UsageError(`hookpoints: --names must be hf or tl, got ${JSON.stringify(names)}`);
  if (namesAt >= 0) argv = argv.filter((_, i) => i !== namesAt && (argv[namesAt].includes('=') || i !== namesAt + 1));
  const { positional, device } = simpleArgs(argv, 'hookpoints');
  if (positional.length !== 1) throw new UsageError('hookpoints: expected exactly one model (folder or hub id)');
  const dev = resolveDevice(device, () => {});
  const model = await loadModelFrom(positional[0], { device: dev });
  if (names === 'tl') {
    writeTlHookpoints(model as unknown as TlListing, io.stdout);
    return 0;
  }
  const hps = model.hookpoints();
  const w = Math.max(4, ...hps.map((h) => h.name.length));
  io.stdout.write(`${'name'.padEnd(w)}  width\n`);
  for (const h of hps) io.stdout.write(`${h.name.padEnd(w)}  ${h.width}\n`);
  return 0;
}

/** Coder folders under root: direct children, plus `{hook}/seedN` of multi-seed runs. */
function findCoders(root: string): string[] {
  const out: string[] = [];
  for (const name of listAllDirs(root)) {
    if (existsSync(join(root, name, 'cfg.json'))) out.push(name);
    else for (const sub of listAllDirs(join(root, name))) if (/^seed\d+$/.test(sub) && existsSync(join(root, name, sub, 'cfg.json'))) out.push(`${name}/${sub}`);
  }
  return out;
}

function listAllDirs(dir: string): string[] {
  try {
    return core.naturalSort(
      readdirSync(dir, { withFileTypes: true })
        .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
        .map((e) => e.name),
    );
  } catch {
    return [];
  }
}

/**
 * The k and activation columns of `sparsify info`: k only where the activation keeps k latents
 * (relu / jumprelu keep a variable number: '-'), and each SAELens kind's own settings.
 */
function infoActivationColumns(cfg: core.SparseCoderConfig): [string, string] {
  const prefixes = cfg.matryoshkaPrefixes.length ? `, matryoshka ${cfg.matryoshkaPrefixes.join('/')}` : '';
  switch (cfg.activation) {
    case 'relu':
      return ['-', 'relu (L1)'];
    case 'jumprelu':
      return ['-', `jumprelu (bandwidth ${cfg.jumpreluBandwidth}, ${cfg.jumpreluSparsityLossMode} L0)`];
    case 'batchtopk':
      return [String(cfg.k), `batchtopk (threshold_lr ${cfg.topkThresholdLr}${prefixes})`];
    default:
      return [String(cfg.k), prefixes ? `${cfg.activation} (${prefixes.slice(2)})` : cfg.activation];
  }
}

async function infoCommand(argv: readonly string[], io: CliIO): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout.write('usage: sparsify info <checkpoint dir>\n       sparsify info --native\n');
    return 0;
  }
  if (argv.includes('--native')) {
    if (argv.length !== 1) throw new UsageError('info --native: takes no other arguments');
    io.stdout.write(nativeInfoText());
    return 0;
  }
  const { positional } = simpleArgs(argv, 'info');
  if (positional.length !== 1) throw new UsageError('info: expected exactly one folder');
  const root = positional[0];
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new core.FileFormatError(`${root}: no such folder`);
  const single = existsSync(join(root, 'cfg.json'));
  const names = single ? ['.'] : findCoders(root);
  if (names.length === 0) throw new core.FileFormatError(`${root}: no sparse coders found (no */cfg.json)`);
  const rows: string[][] = [['name', 'kind', 'd_in', 'latents', 'k', 'activation', 'dtype', 'size']];
  const invalid: string[] = [];
  for (const n of names) {
    const dir = join(root, n);
    // Exactly the checks of loading: a folder listed here loads.
    try {
      if (core.isSaeLensDir(dir)) {
        rows.push(await saeLensInfoRow(n, dir));
        continue;
      }
      (await core.SparseCoder.loadFromDisk(dir)).dispose();
    } catch (e) {
      if (!(e instanceof SparsifyError)) throw e;
      invalid.push(`${n}: INVALID: ${e.message}`);
      continue;
    }
    const { cfg, dIn } = readCoderConfig(dir);
    const file = join(dir, 'sae.safetensors');
    let dtype = '-';
    let size = '-';
    if (existsSync(file)) {
      const h = readSafetensorsHeader(file);
      dtype = [...new Set([...h.tensors.values()].map((t) => t.dtype))].join('/');
      size = `${(statSync(file).size / 1e6).toFixed(2)} MB`;
    }
    const kind = (cfg.transcode ? 'transcoder' : 'sae') + (cfg.skipConnection ? '+skip' : '') + (cfg.multiTopk ? '+multi_topk' : '');
    rows.push([n, kind, String(dIn), String(numLatentsOf(cfg, dIn)), ...infoActivationColumns(cfg), dtype, size]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  if (rows.length > 1) for (const r of rows) io.stdout.write(r.map((x, c) => x.padEnd(widths[c])).join('  ').trimEnd() + '\n');
  for (const line of invalid) io.stdout.write(line + '\n');
  const statePath = join(root, train.STATE_FILE);
  if (existsSync(statePath)) {
    try {
      const s = train.readJsonFile(statePath, 'the trainer state') as Record<string, unknown>;
      io.stdout.write(`\ntraining state: ${s.step} optimizer steps, ${s.global_step} batches, ${s.tokens} tokens, optimizer ${s.optimizer}\n`);
    } catch {
      io.stdout.write(`\ntraining state: ${statePath} is unreadable\n`);
    }
  }
  if (invalid.length) io.stderr.write(`sparsify: error: ${invalid.length} of ${names.length} sparse coder(s) in ${root} do not load\n`);
  return invalid.length ? 1 : 0;
}

async function trainCommand(argv: readonly string[], io: CliIO): Promise<number> {
  const args = parseTrainArgs(argv);
  if (args.help) {
    io.stdout.write(trainHelp() + '\n');
    return 0;
  }
  const embedded = args.model === undefined && args.dataset === undefined;
  let init: train.RunConfigInit = args.init;
  if (embedded) {
    // Embedded defaults apply only where no flag was given.
    const d = train.EMBEDDED_RUN_DEFAULTS;
    const sae = { ...d.sae };
    for (const key of Object.keys(sae)) if (args.init.sae && (args.init.sae as Record<string, unknown>)[key] !== undefined) delete (sae as Record<string, unknown>)[key];
    init = { ...d, ...args.init, sae: { ...sae, ...args.init.sae } };
    init.model = train.DEFAULT_ASSETS_DIR;
    init.dataset = join(train.DEFAULT_ASSETS_DIR, 'tokens.safetensors');
  }
  const cfg = train.runConfig(init);
  train.assertSupportedLossFn(cfg, '--loss_fn');
  checkSaveDir(cfg.saveDir);
  if (!cfg.resume && !args.given.has('run_name')) {
    // The one-command default never fails and never overwrites: a used name gets a fresh suffix.
    const base = cfg.runName ?? 'unnamed';
    const fresh = args.overwrite ? base : train.freshRunName(cfg.saveDir, base);
    if (fresh !== base) io.stderr.write(`sparsify: ${join(cfg.saveDir, base)} holds an earlier run; this run goes to ${join(cfg.saveDir, fresh)}\n`);
    cfg.runName = fresh;
  }
  const device = resolveDevice(args.device, (s) => io.stderr.write(s));

  io.stderr.write(embedded ? `sparsify: training on the embedded tiny model and corpus (${train.DEFAULT_ASSETS_DIR})\n` : '');
  const model = await loadModelFrom(cfg.model, { device, revision: cfg.revision });
  let dataset: train.TokenDatasetLike;
  if (embedded) {
    dataset = train.embeddedDataset({ epochs: train.EMBEDDED_EPOCHS, shuffleSeed: cfg.shuffleSeed, maxExamples: cfg.maxExamples });
  } else {
    dataset = await openDataset(cfg, model);
  }
  const held = trainingEvaluation(args, cfg, dataset);
  dataset = held.dataset;
  const progress = new Progress(io.stderr);
  let lastStep: train.StepInfo | undefined;
  const trainer = new train.Trainer(cfg, dataset, model, {
    device,
    computeDtype: args.computeDtype,
    overwrite: args.overwrite,
    evaluation: held.evaluation,
    onStep: (s) => {
      lastStep = s;
      progress.step(s);
    },
    onLog: (l) => progress.log(l, lastStep),
  });
  if (cfg.resume) {
    await trainer.loadState();
    io.stderr.write(`sparsify: resuming ${trainer.runDir} at batch ${trainer.globalStep} (step ${trainer.optStep})\n`);
  } else {
    await trainer.init();
  }
  io.stderr.write(
    `sparsify: ${trainer.coders.length} sparse coder(s) on ${trainer.hookpoints.join(', ')}; ${dataset.length} sequences of ${dataset.ctxLen} tokens, ` +
      `${trainer.totalSteps} steps; saving to ${trainer.runDir}\n`,
  );
  if (cfg.normalizeActivations !== 'none' && !cfg.resume)
    io.stderr.write(`sparsify: normalize_activations: estimating s over the first ${Math.min(cfg.nBatchesForNormEstimate, trainer.totalBatches)} batches first\n`);
  let interrupted = false;
  const off = io.onInterrupt?.(() => {
    if (interrupted) {
      io.stderr.write('\nsparsify: second interrupt, exiting without waiting for the checkpoint\n');
      process.exit(130);
    }
    interrupted = true;
    io.stderr.write('\nsparsify: interrupted; saving a checkpoint after this batch (Ctrl-C again to quit now)\n');
    trainer.requestStop();
  });
  let result: train.FitResult;
  try {
    result = await trainer.fit();
  } finally {
    off?.();
    progress.finish();
  }
  io.stdout.write(summary(result, trainer));
  return result.stopped ? 130 : 0;
}

async function openDataset(cfg: train.RunConfig, model: core.LanguageModel): Promise<train.TokenDatasetLike> {
  const modelDir = await core.resolveLocalOrHub(cfg.model, { revision: cfg.revision ?? undefined });
  // A tokenizer is needed only for text datasets; pretokenized ones and .bin files do without.
  const tokenizer = existsSync(join(modelDir, 'tokenizer.json')) ? await core.loadTokenizer(modelDir) : undefined;
  return train.openTokenDataset(cfg.dataset, {
    tokenizer,
    ctxLen: cfg.ctxLen,
    split: cfg.split,
    textColumn: cfg.textColumn,
    dataArgs: cfg.dataArgs,
    shuffleSeed: cfg.shuffleSeed,
    maxExamples: cfg.maxExamples ?? undefined,
    revision: cfg.revision ?? undefined,
    vocabSize: model.vocabSize,
    maxPositions: model.maxPositions,
    numProc: cfg.dataPreprocessingNumProc,
    hub: cfg.hfToken ? { token: cfg.hfToken } : undefined,
  });
}

/** --save_dir must be a folder (or not exist yet). */
function checkSaveDir(dir: string): void {
  let st;
  try {
    st = statSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') throw new ConfigError(`--save_dir ${dir}: a part of this path is a file, not a folder`);
    throw e;
  }
  if (!st.isDirectory()) throw new ConfigError(`--save_dir ${dir}: is a file, not a folder`);
}

/** A system error (ENOENT, EACCES, ENOSPC, ...) as one line naming the operation and path; undefined for anything else. */
function describeSystemError(e: unknown): string | undefined {
  const err = e as NodeJS.ErrnoException;
  if (!(err instanceof Error) || typeof err.code !== 'string' || !/^E[A-Z]+$/.test(err.code)) return undefined;
  const what: Record<string, string> = {
    ENOENT: 'no such file or folder',
    ENOTDIR: 'a part of the path is not a folder',
    EISDIR: 'is a folder, not a file',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    ENOSPC: 'no space left on the device',
    EROFS: 'read-only file system',
    EEXIST: 'already exists',
    ENOTEMPTY: 'folder not empty',
    EMFILE: 'too many open files',
  };
  return `${err.path ?? err.syscall ?? 'file system'}: ${what[err.code] ?? err.code} (${err.syscall ?? 'i/o'} ${err.code})`;
}

function summary(r: train.FitResult, t: train.Trainer): string {
  const lines = [
    '',
    `${r.stopped ? 'interrupted' : 'done'}: ${r.steps} steps, ${r.batches} batches, ${r.tokens.toLocaleString('en-US')} tokens in ${formatDuration(r.elapsedSec)} ` +
      `(${Math.round(r.tokens / Math.max(1e-9, r.elapsedSec)).toLocaleString('en-US')} tok/s)`,
  ];
  const names = Object.keys(r.final);
  if (names.length) {
    const w = Math.max(...names.map((n) => n.length), 4);
    lines.push(`${'name'.padEnd(w)}  fvu      dead`);
    for (const n of names) lines.push(`${n.padEnd(w)}  ${r.final[n].fvu.toFixed(4)}   ${(r.final[n].deadPct * 100).toFixed(2)}%`);
  }
  lines.push(`checkpoint: ${t.runDir}${r.stopped ? ' (resume with --resume)' : ''}`);
  return lines.join('\n') + '\n';
}
