/**
 * `sparsify features <coders> [model] [dataset] [--flags]`: top-activating contexts, interval
 * samples, firing statistics, histograms and logit effects of every latent (docs/features.md).
 * <coders> is a run folder (its config.json names the model and dataset), a folder of coders or
 * one coder folder. Rows are read in dataset order unless --shuffle_seed is given.
 */
import * as core from '@sparsify/core';
import { FileFormatError, SparseCoder } from '@sparsify/core';
import * as train from '@sparsify/train';
import { existsSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';

import type { CliIO } from '../cli.js';
import { resolveDevice, type DeviceFlag } from '../device.js';
import { UsageError } from '../flags.js';
import { flagsHelp, parseFlags, type FlagSpec } from './args.js';

const SPECS: Record<string, FlagSpec> = {
  out: { kind: 'string', help: 'output folder' },
  max_examples: { kind: 'int', help: 'use at most this many dataset rows' },
  ctx_len: { kind: 'int', help: 'tokens per row (text datasets)' },
  top: { kind: 'int', help: 'top activations kept per latent' },
  intervals: { kind: 'int', help: 'interval groups of equal activation width' },
  interval_size: { kind: 'int', help: 'samples per interval group' },
  window: { kind: 'int', min: 2, max: 1024, help: 'context tokens per example (the whole row when ctx_len is at most this; Neuronpedia takes up to 1024)' },
  batch_size: { kind: 'int', help: 'rows per model forward' },
  shuffle_seed: { kind: 'int', min: 0, help: 'shuffle the rows with this seed (HF Dataset.shuffle)' },
  split: { kind: 'string', help: 'dataset split' },
  text_column: { kind: 'string', help: 'text column of the dataset' },
  revision: { kind: 'string', help: 'model revision on the hub' },
  ignore_special: { kind: 'bool', help: 'count BOS/EOS/pad tokens as not evaluated' },
  neuronpedia: { kind: 'string', help: 'also write the SAEDashboard/Neuronpedia batch JSON to this folder' },
  device: { kind: 'enum', choices: ['auto', 'cpu', 'cuda'], help: 'where the model and coders run' },
  compute_dtype: { kind: 'enum', choices: ['f32', 'bf16'], help: "the coders' encoder product (bf16: CPU, opt-in; bf16 operands, f32 accumulation)" },
};

const DEFAULTS: Record<string, unknown> = {
  out: 'features/<run name>',
  ctx_len: 2048,
  top: 20,
  intervals: 5,
  interval_size: 5,
  window: 64,
  batch_size: 8,
  split: 'train',
  text_column: 'text',
  ignore_special: true,
  device: 'auto',
  compute_dtype: 'f32',
};

export const FEATURES_USAGE = `usage: sparsify features <coders> [model] [dataset] [--flags]

  <coders>  a run folder (model and dataset default to those in its config.json), a folder of
            coders, or one coder folder

${flagsHelp(SPECS, DEFAULTS)}
`;

interface Coders {
  runDir: string | null;
  runConfig: Record<string, unknown> | null;
  entries: { name: string; hookpoint: string; dir: string }[];
}

function findCoders(path: string): Coders {
  const root = resolve(path);
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new FileFormatError(`${path}: no such folder`);
  const readConfig = (dir: string) => {
    const p = join(dir, 'config.json');
    if (!existsSync(p)) return null;
    try {
      return JSON.parse(readFileSync(p, 'utf-8')) as Record<string, unknown>;
    } catch (e) {
      throw new FileFormatError(`${p}: not valid JSON (${(e as Error).message})`);
    }
  };
  if (existsSync(join(root, 'cfg.json'))) {
    const parent = dirname(root);
    return { runDir: existsSync(join(parent, 'config.json')) ? parent : null, runConfig: readConfig(parent), entries: [{ name: basename(root), hookpoint: basename(root), dir: root }] };
  }
  const entries: Coders['entries'] = [];
  for (const name of dirs(root)) {
    if (existsSync(join(root, name, 'cfg.json'))) entries.push({ name, hookpoint: name, dir: join(root, name) });
    else for (const sub of dirs(join(root, name))) if (/^seed\d+$/.test(sub) && existsSync(join(root, name, sub, 'cfg.json'))) entries.push({ name: `${name}/${sub}`, hookpoint: name, dir: join(root, name, sub) });
  }
  if (entries.length === 0) throw new FileFormatError(`${path}: no sparse coders found (no */cfg.json)`);
  const runConfig = readConfig(root);
  return { runDir: runConfig ? root : null, runConfig, entries };
}

function dirs(dir: string): string[] {
  try {
    // best/ (save_best copies) and a coder's train_iterate/ are not coders of the run.
    return core.naturalSort(readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory() && !e.name.startsWith('.') && e.name !== 'best' && e.name !== 'train_iterate').map((e) => e.name));
  } catch {
    return [];
  }
}

/** The embedded default's corpus (what `sparsify train` with no arguments trains on). */
function isEmbeddedDataset(dataset: string): boolean {
  // Also a run trained from another checkout of the repository (its absolute path differs).
  return resolve(dataset) === resolve(join(train.DEFAULT_ASSETS_DIR, 'tokens.safetensors')) || /[\\/]train[\\/]assets[\\/]default[\\/]tokens\.safetensors$/.test(dataset);
}

export async function featuresCommand(argv: readonly string[], io: CliIO): Promise<number> {
  const args = parseFlags(argv, SPECS, 'features');
  if (args.help) {
    io.stdout.write(FEATURES_USAGE);
    return 0;
  }
  const [codersPath, modelArg, datasetArg, ...extra] = args.positional;
  if (!codersPath) throw new UsageError('features: expected a run folder or coder folder');
  if (extra.length) throw new UsageError(`features: unexpected argument ${JSON.stringify(extra[0])}`);
  const v = <T>(k: string) => args.values.get(k) as T | undefined;
  const found = findCoders(codersPath);
  const cfg = found.runConfig ?? {};
  const modelSpec = modelArg ?? (typeof cfg.model === 'string' ? cfg.model : undefined);
  const datasetSpec = datasetArg ?? (typeof cfg.dataset === 'string' ? cfg.dataset : undefined);
  if (!modelSpec) throw new UsageError(`features: no model given and ${codersPath} has no run config.json naming one`);
  if (!datasetSpec) throw new UsageError(`features: no dataset given and ${codersPath} has no run config.json naming one`);
  const out = v<string>('out') ?? join('features', basename(found.runDir ?? resolve(codersPath)));
  const runRoot = found.runDir ?? resolve(codersPath);
  if ((resolve(out) + sep).startsWith(runRoot + sep))
    throw new UsageError(`--out ${out}: inside the run folder ${codersPath}, which training replaces on every save; choose a folder outside it`);
  const device = resolveDevice((v<DeviceFlag>('device') ?? 'auto') as DeviceFlag, (s) => io.stderr.write(s));
  const building = train.beginFeaturesOutput(out);
  const model = await core.loadModel(modelSpec, { device, revision: v<string>('revision') });
  const coders: { name: string; hookpoint: string; coder: SparseCoder }[] = [];
  let unembedding: core.Unembedding | undefined;
  try {
    for (const e of found.entries) coders.push({ name: e.name, hookpoint: e.hookpoint, coder: await SparseCoder.loadFromDisk(e.dir, { device }) });
    for (const c of coders) c.coder.computeDtype = (v<'f32' | 'bf16'>('compute_dtype') ?? 'f32');
    unembedding = readUnembeddingOrSay(model, io);
    const tokenizer = existsSync(join(model.path, 'tokenizer.json')) ? await core.loadTokenizer(model.path) : undefined;
    const shuffleSeed = v<number>('shuffle_seed') ?? null;
    const dataset = await openFeaturesDataset(datasetSpec, cfg, args.values, model, tokenizer, shuffleSeed);
    const ignoreTokens = v<boolean>('ignore_special') === false || !tokenizer ? [] : specialTokens(tokenizer);
    const settings: train.FeaturesIndex['settings'] = {
      top: v<number>('top') ?? 20,
      intervals: v<number>('intervals') ?? 5,
      interval_size: v<number>('interval_size') ?? 5,
      histogram_bins: 50,
      logit_rows: 10,
      window: v<number>('window') ?? 64,
      seed: 0,
      shuffle_seed: shuffleSeed,
    };
    io.stderr.write(
      `sparsify: features of ${coders.length} coder(s) (${coders.map((c) => c.name).join(', ')}) over ${dataset.length} rows of ${dataset.ctxLen} tokens; writing ${out}\n`,
    );
    const started = Date.now();
    let lastTenth = -1;
    const summary = await train.runFeaturePass(coders, model, dataset, building, {
      top: settings.top,
      intervals: settings.intervals,
      intervalSize: settings.interval_size,
      window: settings.window,
      batchSize: v<number>('batch_size') ?? 8,
      ignoreTokens,
      unembedding,
      scratchDir: join(building, '.scratch'),
      onProgress: (done, total) => {
        const tenth = Math.floor((done / total) * 10);
        if (tenth !== lastTenth) io.stderr.write(`sparsify: ${done}/${total} rows\n`);
        lastTenth = tenth;
      },
    });
    const vocabSize = Math.max(model.vocabSize, tokenizer?.vocabSize ?? 0);
    core.writeFileAtomic(join(building, 'vocab.json'), [JSON.stringify(train.displayVocab(tokenizer, vocabSize))]);
    // The tokenizer as the pass ran it (AutoTokenizer's class applied: tokenizer-classes.ts), so
    // that the viewer tokenizes prompts the same way without the model's config.json.
    if (tokenizer?.source)
      for (const [f, v] of [['tokenizer.json', tokenizer.source.tokenizerJson], ['tokenizer_config.json', tokenizer.source.config]] as const)
        core.writeFileAtomic(join(building, f), [JSON.stringify(v)]);
    const index: train.FeaturesIndex = {
      format: train.FEATURES_FORMAT,
      version: 1,
      model: modelSpec,
      model_dir: resolve(model.path),
      run: found.runDir,
      dataset: datasetSpec,
      rows: summary.rows,
      ctx_len: summary.ctxLen,
      positions: summary.positions,
      tokens: summary.tokens,
      ignore_tokens: ignoreTokens,
      settings,
      logit_effects: unembedding ? `W_dec rows through the final norm's gain (${unembedding.normKind}${unembedding.normKind === 'layernorm' ? ', centred' : ''}) times the unembedding` : 'none',
      vocab_size: vocabSize,
      vocab: 'vocab.json',
      tokenizer: tokenizer ? 'tokenizer.json' : null,
      hookpoints: summary.coders.map((c) => ({
        name: c.name,
        hookpoint: c.hookpoint,
        coder_dir: found.entries.find((e) => e.name === c.name)!.dir,
        num_latents: c.numLatents,
        k: c.k,
        transcode: c.transcode,
        dead: c.dead,
        logit_effects: c.logitEffects,
        features: `${c.name}/features.jsonl`,
        summary: `${c.name}/${train.SUMMARY_FILE}`,
      })),
      created: new Date().toISOString(),
    };
    core.writeFileAtomic(join(building, train.FEATURES_INDEX), [JSON.stringify(index, null, 2) + '\n']);
    train.finishFeaturesOutput(building, out);
    io.stdout.write(
      `features: ${summary.positions.toLocaleString('en-US')} tokens (${summary.tokens.toLocaleString('en-US')} evaluated) in ${((Date.now() - started) / 1000).toFixed(1)} s; ` +
        summary.coders.map((c) => `${c.name}: ${c.numLatents - c.dead}/${c.numLatents} latents fire`).join(', ') +
        `\nwrote ${out}  (view it: sparsify view ${relative(process.cwd(), resolve(out)) || '.'})\n`,
    );
  } catch (e) {
    rmSync(building, { recursive: true, force: true });
    throw e;
  } finally {
    unembedding?.weight.dispose();
    for (const c of coders) c.coder.dispose();
    model.dispose();
  }
  const np = v<string>('neuronpedia');
  if (np) {
    const r = train.exportNeuronpedia(out, np);
    io.stdout.write(`neuronpedia: ${r.features} features in ${r.files.length} batch file(s) under ${np}\n`);
  }
  return 0;
}

/** The dataset rows: the embedded corpus for the embedded default run, else as `sparsify train` opens datasets. */
async function openFeaturesDataset(
  spec: string,
  cfg: Record<string, unknown>,
  values: Map<string, unknown>,
  model: core.LanguageModel,
  tokenizer: core.Tokenizer | undefined,
  shuffleSeed: number | null,
): Promise<train.TokenDatasetLike> {
  const v = <T>(k: string) => values.get(k) as T | undefined;
  const maxExamples = v<number>('max_examples');
  if (isEmbeddedDataset(spec)) return train.embeddedDataset({ split: v<string>('split') === 'heldout' ? 'heldout' : 'train', shuffleSeed, maxExamples });
  const str = (k: string) => (typeof cfg[k] === 'string' ? (cfg[k] as string) : undefined);
  return train.openTokenDataset(spec, {
    tokenizer,
    ctxLen: v<number>('ctx_len') ?? (typeof cfg.ctx_len === 'number' ? cfg.ctx_len : 2048),
    split: v<string>('split') ?? str('split') ?? 'train',
    textColumn: v<string>('text_column') ?? str('text_column') ?? 'text',
    dataArgs: str('data_args'),
    revision: str('revision'),
    shuffleSeed,
    maxExamples,
    vocabSize: model.vocabSize,
    maxPositions: model.maxPositions,
  });
}

/** BOS, EOS and pad ids of a tokenizer (what SAEDashboard leaves out). */
function specialTokens(tokenizer: core.Tokenizer): number[] {
  const ids = [tokenizer.bosTokenId, tokenizer.eosTokenId, tokenizer.tokenToId('<pad>'), tokenizer.tokenToId('[PAD]'), tokenizer.tokenToId('<|pad|>')];
  return [...new Set(ids.filter((x): x is number => typeof x === 'number'))];
}

function readUnembeddingOrSay(model: core.LanguageModel, io: CliIO): core.Unembedding | undefined {
  try {
    return core.readUnembedding(model.path, model.config as Record<string, unknown>);
  } catch (e) {
    io.stderr.write(`sparsify: no logit effects: ${(e as Error).message}\n`);
    return undefined;
  }
}
