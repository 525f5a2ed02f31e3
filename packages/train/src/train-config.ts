/**
 * TrainConfig (sparsify 1.3 `TrainConfig`) and the CLI's RunConfig, with sparsify's defaults
 * except the fixed ones: optimizer defaults to "adam" (upstream PR #139). Serialised like
 * simple_parsing's save_json: snake_case keys in dataclass field order, the coder config as a
 * nested "sae" object, float-typed fields printed as Python floats.
 */
import { ConfigError, coderConfigToDict, hasKindKeys, isSaeLensKind, PyFloat, pyJson, sparseCoderConfig, validateCoderConfig, type OptimizerKind, type SparseCoderConfig } from '@sparsify/core';
import { cpus } from 'node:os';

import { checkRunName } from './run-claim.js';

export type LossFn = 'fvu' | 'ce' | 'kl';
export type OptimizerName = OptimizerKind;

export interface TrainConfig {
  sae: SparseCoderConfig;
  /** Sequences per batch. */
  batchSize: number;
  /** Batches per optimizer step. */
  gradAccSteps: number;
  /** Chunks each batch's activations into this many micro-batches (real chunking, PR #138). */
  microAccSteps: number;
  lossFn: LossFn;
  optimizer: OptimizerName;
  /** null (or 0) = the optimizer's default law (see lr.ts). */
  lr: number | null;
  lrWarmupSteps: number;
  kDecaySteps: number;
  auxkAlpha: number;
  /** A latent is dead after this many tokens without firing. */
  deadFeatureThreshold: number;
  excludeTokens: number[];
  hookpoints: string[];
  initSeeds: number[];
  layers: number[];
  layerStride: number;
  distributeModules: boolean;
  saveEvery: number;
  saveBest: boolean;
  finetune: string | null;
  logToWandb: boolean;
  runName: string | null;
  wandbLogFrequency: number;
  saveDir: string;
  /** relu: final L1 coefficient (SAELens l1_coefficient), reached after l1WarmUpSteps optimizer steps. */
  l1Coefficient: number;
  l1WarmUpSteps: number;
  /** jumprelu: final L0 coefficient (SAELens l0_coefficient), reached after l0WarmUpSteps optimizer steps. */
  l0Coefficient: number;
  l0WarmUpSteps: number;
  /** batchtopk, Matryoshka (over batchtopk or topk): AuxK weight over the dead latents (SAELens aux_loss_coefficient). */
  auxLossCoefficient: number;
  /** jumprelu: pre-activation loss weight over the dead latents (SAELens pre_act_loss_coefficient); null = off. */
  preActLossCoefficient: number | null;
  /**
   * SAELens's dead_feature_window (optimizer steps without firing); when set it replaces
   * dead_feature_threshold by steps × batch_size × ctx_len × grad_acc_steps tokens.
   */
  deadFeatureWindow: number | null;
  /**
   * 'expected_average_only_in' (SAELens): the coders train on s·x, s = sqrt(d_in) / E||x|| per
   * hookpoint, and are saved with s folded into their weights (they read raw activations).
   */
  normalizeActivations: 'none' | 'expected_average_only_in';
  /**
   * SAELens's trainer settings. maxGradNorm: clip_grad_norm_ of each coder's gradients before
   * every optimizer step; 0 = off; null = the kind's default (defaultMaxGradNorm).
   * nBatchesForNormEstimate: batches (from the start of the data, capped by the run's batches)
   * whose mean token norms give normalize_activations' s.
   */
  maxGradNorm: number | null;
  nBatchesForNormEstimate: number;
}

export interface RunConfig extends TrainConfig {
  model: string;
  dataset: string;
  split: string;
  ctxLen: number;
  hfToken: string | null;
  revision: string | null;
  loadIn8bit: boolean;
  maxExamples: number | null;
  resume: boolean;
  textColumn: string;
  shuffleSeed: number;
  dataPreprocessingNumProc: number;
  dataArgs: string;
}

type FieldKind = 'int' | 'float' | 'bool' | 'str' | 'int[]' | 'str[]' | 'int?' | 'float?' | 'str?' | 'enum';

export interface FieldSpec {
  field: string;
  key: string;
  kind: FieldKind;
  choices?: readonly string[];
  help: string;
}

export const TRAIN_FIELDS: readonly FieldSpec[] = [
  { field: 'batchSize', key: 'batch_size', kind: 'int', help: 'sequences per batch' },
  { field: 'gradAccSteps', key: 'grad_acc_steps', kind: 'int', help: 'batches per optimizer step' },
  { field: 'microAccSteps', key: 'micro_acc_steps', kind: 'int', help: 'split each batch into this many chunks (saves memory)' },
  { field: 'lossFn', key: 'loss_fn', kind: 'enum', choices: ['ce', 'fvu', 'kl'], help: 'loss (only fvu is implemented)' },
  { field: 'optimizer', key: 'optimizer', kind: 'enum', choices: ['adam', 'muon', 'signum'], help: 'optimizer' },
  { field: 'lr', key: 'lr', kind: 'float?', help: 'learning rate; default: adam 2e-4/sqrt(M/2^14), signum 5e-3/sqrt(M/2^14), muon 2e-3' },
  { field: 'lrWarmupSteps', key: 'lr_warmup_steps', kind: 'int', help: 'linear LR warmup, optimizer steps (adam, muon)' },
  { field: 'kDecaySteps', key: 'k_decay_steps', kind: 'int', help: 'decay k linearly from 10*d_in to k over this many batches' },
  { field: 'auxkAlpha', key: 'auxk_alpha', kind: 'float', help: 'weight of the AuxK loss on dead latents (0 = off)' },
  { field: 'deadFeatureThreshold', key: 'dead_feature_threshold', kind: 'int', help: 'tokens without firing after which a latent is dead' },
  { field: 'excludeTokens', key: 'exclude_tokens', kind: 'int[]', help: 'token ids whose positions are not trained on' },
  { field: 'hookpoints', key: 'hookpoints', kind: 'str[]', help: 'fnmatch patterns of module names to train on' },
  { field: 'initSeeds', key: 'init_seeds', kind: 'int[]', help: 'one sparse coder per seed and hookpoint' },
  { field: 'layers', key: 'layers', kind: 'int[]', help: 'layer indices (when no hookpoints are given; default all)' },
  { field: 'layerStride', key: 'layer_stride', kind: 'int', help: 'keep every n-th hookpoint' },
  { field: 'distributeModules', key: 'distribute_modules', kind: 'bool', help: 'shard hookpoints across ranks (single process: no effect)' },
  { field: 'saveEvery', key: 'save_every', kind: 'int', help: 'checkpoint every n optimizer steps' },
  { field: 'saveBest', key: 'save_best', kind: 'bool', help: 'also keep the lowest-loss checkpoint per hookpoint in best/' },
  { field: 'finetune', key: 'finetune', kind: 'str?', help: 'start from these sparse coders (local folder or hub id)' },
  { field: 'logToWandb', key: 'log_to_wandb', kind: 'bool', help: 'accepted for compatibility; metrics go to metrics.jsonl' },
  { field: 'runName', key: 'run_name', kind: 'str?', help: 'run folder name under save_dir (default "unnamed")' },
  { field: 'wandbLogFrequency', key: 'wandb_log_frequency', kind: 'int', help: 'log averaged metrics every n optimizer steps' },
  { field: 'saveDir', key: 'save_dir', kind: 'str', help: 'folder that holds run folders' },
];

/** SAELens's trainer settings: gradient clipping and the activation-norm estimate. */
const SAELENS_OPTIM_FIELDS: readonly FieldSpec[] = [
  { field: 'maxGradNorm', key: 'max_grad_norm', kind: 'float?', help: 'clip each coder\'s global gradient norm to this before every step (0 = off; default 1.0 for relu, jumprelu, batchtopk and Matryoshka, else 0)' },
  { field: 'nBatchesForNormEstimate', key: 'n_batches_for_norm_estimate', kind: 'int', help: 'normalize_activations: batches from the start of the data that estimate s (capped by the run\'s batches)' },
];

/** max_grad_norm's default: SAELens's 1.0 for the SAELens kinds and any Matryoshka coder; 0 (sparsify: none) otherwise. */
export function defaultMaxGradNorm(sae: Pick<SparseCoderConfig, 'activation' | 'matryoshkaPrefixes'>): number {
  return hasKindKeys(sae) ? 1.0 : 0;
}

/** Training settings of the SAELens kinds (SAELens's names); in config.json only for those kinds (or with clipping). */
export const SAELENS_TRAIN_FIELDS: readonly FieldSpec[] = [
  { field: 'l1Coefficient', key: 'l1_coefficient', kind: 'float', help: 'relu: L1 coefficient (penalty sum_i f_i ||W_dec[i]||)' },
  { field: 'l1WarmUpSteps', key: 'l1_warm_up_steps', kind: 'int', help: 'relu: linear warm-up of the L1 coefficient from 0, optimizer steps' },
  { field: 'l0Coefficient', key: 'l0_coefficient', kind: 'float', help: 'jumprelu: L0 coefficient' },
  { field: 'l0WarmUpSteps', key: 'l0_warm_up_steps', kind: 'int', help: 'jumprelu: linear warm-up of the L0 coefficient from 0, optimizer steps' },
  { field: 'auxLossCoefficient', key: 'aux_loss_coefficient', kind: 'float', help: 'batchtopk, Matryoshka: weight of AuxK on the dead latents (0 = off)' },
  { field: 'preActLossCoefficient', key: 'pre_act_loss_coefficient', kind: 'float?', help: 'jumprelu: weight of the pre-activation loss on the dead latents (None = off)' },
  {
    field: 'deadFeatureWindow', key: 'dead_feature_window', kind: 'int?',
    help: 'optimizer steps without firing after which a latent is dead (SAELens); sets dead_feature_threshold = steps*batch_size*ctx_len*grad_acc_steps',
  },
  {
    field: 'normalizeActivations', key: 'normalize_activations', kind: 'enum', choices: ['expected_average_only_in', 'none'],
    help: 'train on s*x, s = sqrt(d_in)/E||x|| over n_batches_for_norm_estimate batches; saved coders have s folded in',
  },
  ...SAELENS_OPTIM_FIELDS,
];

export const CODER_FIELDS: readonly FieldSpec[] = [
  { field: 'activation', key: 'activation', kind: 'enum', choices: ['batchtopk', 'groupmax', 'jumprelu', 'relu', 'topk'], help: 'sparsifying activation (jumprelu, batchtopk, relu: SAELens kinds, CPU)' },
  { field: 'expansionFactor', key: 'expansion_factor', kind: 'int', help: 'latents = d_in * expansion_factor when num_latents is 0' },
  { field: 'normalizeDecoder', key: 'normalize_decoder', kind: 'bool', help: 'keep decoder rows at unit norm' },
  { field: 'numLatents', key: 'num_latents', kind: 'int', help: 'explicit latent count (0 = use expansion_factor)' },
  { field: 'k', key: 'k', kind: 'int', help: 'active latents per token (batchtopk: the average, a number > 0 such as 16.5)' },
  { field: 'multiTopk', key: 'multi_topk', kind: 'bool', help: 'add the Multi-TopK loss' },
  { field: 'skipConnection', key: 'skip_connection', kind: 'bool', help: 'add a linear skip connection' },
  { field: 'transcode', key: 'transcode', kind: 'bool', help: "train a transcoder (module input -> module output)" },
  { field: 'matryoshkaPrefixes', key: 'matryoshka_prefixes', kind: 'int[]', help: 'batchtopk or topk: Matryoshka prefix widths (strictly increasing; sum of prefix losses)' },
  { field: 'jumpreluInitThreshold', key: 'jumprelu_init_threshold', kind: 'float', help: 'jumprelu: initial threshold' },
  { field: 'jumpreluBandwidth', key: 'jumprelu_bandwidth', kind: 'float', help: 'jumprelu: width of the threshold gradient kernel' },
  { field: 'jumpreluSparsityLossMode', key: 'jumprelu_sparsity_loss_mode', kind: 'enum', choices: ['step', 'tanh'], help: 'jumprelu: L0 penalty as a step or tanh' },
  { field: 'jumpreluTanhScale', key: 'jumprelu_tanh_scale', kind: 'float', help: 'jumprelu: scale of the tanh L0 penalty' },
  { field: 'topkThresholdLr', key: 'topk_threshold_lr', kind: 'float', help: 'batchtopk: rate of the running inference threshold' },
  { field: 'applyBDecToInput', key: 'apply_b_dec_to_input', kind: 'bool', help: 'SAELens kinds: encode x - b_dec (else x)' },
  { field: 'lpNorm', key: 'lp_norm', kind: 'float', help: 'relu: p >= 1 of the L1 penalty ||f * n||_p per token (1 = sum_i f_i n_i)' },
];

export const RUN_FIELDS: readonly FieldSpec[] = [
  { field: 'model', key: 'model', kind: 'str', help: 'model folder or hub id (positional)' },
  { field: 'dataset', key: 'dataset', kind: 'str', help: 'dataset folder, file or hub id (positional)' },
  { field: 'split', key: 'split', kind: 'str', help: 'dataset split' },
  { field: 'ctxLen', key: 'ctx_len', kind: 'int', help: 'tokens per sequence' },
  { field: 'hfToken', key: 'hf_token', kind: 'str?', help: 'hub token (never written to config.json)' },
  { field: 'revision', key: 'revision', kind: 'str?', help: 'model revision' },
  { field: 'loadIn8bit', key: 'load_in_8bit', kind: 'bool', help: 'not supported (accepted for compatibility; must be false)' },
  { field: 'maxExamples', key: 'max_examples', kind: 'int?', help: 'keep the first n sequences after shuffling' },
  { field: 'resume', key: 'resume', kind: 'bool', help: 'continue the run in save_dir/run_name' },
  { field: 'textColumn', key: 'text_column', kind: 'str', help: 'dataset text column' },
  { field: 'shuffleSeed', key: 'shuffle_seed', kind: 'int', help: 'dataset shuffle seed' },
  { field: 'dataPreprocessingNumProc', key: 'data_preprocessing_num_proc', kind: 'int', help: 'tokenizer workers' },
  { field: 'dataArgs', key: 'data_args', kind: 'str', help: '"a=1,b=x" options for the dataset loader' },
];

export const DEFAULT_TRAIN_CONFIG: Readonly<Omit<TrainConfig, 'sae'>> = Object.freeze({
  batchSize: 32,
  gradAccSteps: 1,
  microAccSteps: 1,
  lossFn: 'fvu',
  optimizer: 'adam',
  lr: null,
  lrWarmupSteps: 1000,
  kDecaySteps: 0,
  auxkAlpha: 0.0,
  deadFeatureThreshold: 10_000_000,
  excludeTokens: [],
  hookpoints: [],
  initSeeds: [0],
  layers: [],
  layerStride: 1,
  distributeModules: false,
  saveEvery: 1000,
  saveBest: false,
  finetune: null,
  logToWandb: true,
  runName: null,
  wandbLogFrequency: 1,
  saveDir: 'checkpoints',
  l1Coefficient: 1.0,
  l1WarmUpSteps: 0,
  l0Coefficient: 1.0,
  l0WarmUpSteps: 0,
  auxLossCoefficient: 1.0,
  preActLossCoefficient: null,
  deadFeatureWindow: null,
  normalizeActivations: 'none',
  maxGradNorm: null,
  nBatchesForNormEstimate: 1000,
});

export const DEFAULT_RUN_FIELDS: Readonly<Omit<RunConfig, keyof TrainConfig>> = Object.freeze({
  model: 'HuggingFaceTB/SmolLM2-135M',
  dataset: 'EleutherAI/SmolLM2-135M-10B',
  split: 'train',
  ctxLen: 2048,
  hfToken: null,
  revision: null,
  loadIn8bit: false,
  maxExamples: null,
  resume: false,
  textColumn: 'text',
  shuffleSeed: 42,
  dataPreprocessingNumProc: Math.max(1, Math.floor(cpus().length / 2)),
  dataArgs: '',
});

export type TrainConfigInit = Partial<Omit<TrainConfig, 'sae'>> & { sae?: Partial<SparseCoderConfig> };
export type RunConfigInit = Partial<Omit<RunConfig, 'sae'>> & { sae?: Partial<SparseCoderConfig> };

/** A full, validated TrainConfig (sparsify's __post_init__ checks plus type checks). */
export function trainConfig(init: TrainConfigInit = {}, opts: { resolved?: boolean } = {}): TrainConfig {
  const cfg: TrainConfig = {
    ...structuredClone(DEFAULT_TRAIN_CONFIG as TrainConfig),
    ...structuredClone(init),
    sae: sparseCoderConfig(init.sae ?? {}),
  } as TrainConfig;
  validateTrainConfig(cfg, opts);
  return cfg;
}

export function runConfig(init: RunConfigInit = {}, opts: { resolved?: boolean } = {}): RunConfig {
  const cfg = { ...structuredClone(DEFAULT_RUN_FIELDS), ...trainConfig(init, opts), ...pick(init, RUN_FIELDS) } as RunConfig;
  validateFields(cfg as unknown as Record<string, unknown>, RUN_FIELDS, 'RunConfig');
  if (cfg.loadIn8bit) throw new ConfigError('RunConfig: load_in_8bit is not supported (no bitsandbytes); weights are used in their stored dtype');
  if (cfg.ctxLen < 1) throw new ConfigError(`RunConfig: ctx_len must be >= 1, got ${cfg.ctxLen}`);
  if (cfg.maxExamples !== null && cfg.maxExamples < 1) throw new ConfigError(`RunConfig: max_examples must be >= 1, got ${cfg.maxExamples}`);
  return cfg;
}

function pick(init: Record<string, unknown>, fields: readonly FieldSpec[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of fields) if (init[f.field] !== undefined) out[f.field] = structuredClone(init[f.field]);
  return out;
}

function validateFields(cfg: Record<string, unknown>, fields: readonly FieldSpec[], where: string): void {
  for (const f of fields) {
    const v = cfg[f.field];
    const bad = (want: string) => new ConfigError(`${where}: ${f.key} must be ${want}, got ${JSON.stringify(v)}`);
    const isInt = (x: unknown) => typeof x === 'number' && Number.isSafeInteger(x);
    switch (f.kind) {
      case 'int':
        if (!isInt(v)) throw bad('an integer');
        break;
      case 'int?':
        if (v !== null && !isInt(v)) throw bad('an integer or null');
        break;
      case 'float':
        if (typeof v !== 'number' || !Number.isFinite(v)) throw bad('a finite number');
        break;
      case 'float?':
        if (v !== null && (typeof v !== 'number' || !Number.isFinite(v))) throw bad('a finite number or null');
        break;
      case 'bool':
        if (typeof v !== 'boolean') throw bad('a boolean');
        break;
      case 'str':
        if (typeof v !== 'string') throw bad('a string');
        break;
      case 'str?':
        if (v !== null && typeof v !== 'string') throw bad('a string or null');
        break;
      case 'int[]':
        if (!Array.isArray(v) || !v.every(isInt)) throw bad('a list of integers');
        break;
      case 'str[]':
        if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw bad('a list of strings');
        break;
      case 'enum':
        if (!f.choices!.includes(v as string)) throw bad(`one of ${f.choices!.map((c) => JSON.stringify(c)).join(', ')}`);
        break;
    }
  }
}

/** `resolved`: a saved config (hookpoints and layers both filled in by the trainer) is fine. */
export function validateTrainConfig(cfg: TrainConfig, opts: { resolved?: boolean } = {}): void {
  const where = 'TrainConfig';
  validateCoderConfig(cfg.sae, `${where}.sae`);
  validateFields(cfg as unknown as Record<string, unknown>, [...TRAIN_FIELDS, ...SAELENS_TRAIN_FIELDS], where);
  const min = (v: number, key: string, m: number) => {
    if (v < m) throw new ConfigError(`${where}: ${key} must be >= ${m}, got ${v}`);
  };
  min(cfg.batchSize, 'batch_size', 1);
  min(cfg.gradAccSteps, 'grad_acc_steps', 1);
  min(cfg.microAccSteps, 'micro_acc_steps', 1);
  min(cfg.lrWarmupSteps, 'lr_warmup_steps', 0);
  min(cfg.kDecaySteps, 'k_decay_steps', 0);
  min(cfg.auxkAlpha, 'auxk_alpha', 0);
  min(cfg.deadFeatureThreshold, 'dead_feature_threshold', 0);
  min(cfg.layerStride, 'layer_stride', 1);
  min(cfg.saveEvery, 'save_every', 1);
  min(cfg.wandbLogFrequency, 'wandb_log_frequency', 1);
  min(cfg.l1Coefficient, 'l1_coefficient', 0);
  min(cfg.l0Coefficient, 'l0_coefficient', 0);
  min(cfg.l1WarmUpSteps, 'l1_warm_up_steps', 0);
  min(cfg.l0WarmUpSteps, 'l0_warm_up_steps', 0);
  if (cfg.maxGradNorm !== null) min(cfg.maxGradNorm, 'max_grad_norm', 0);
  min(cfg.nBatchesForNormEstimate, 'n_batches_for_norm_estimate', 1);
  min(cfg.auxLossCoefficient, 'aux_loss_coefficient', 0);
  if (cfg.preActLossCoefficient !== null) min(cfg.preActLossCoefficient, 'pre_act_loss_coefficient', 0);
  if (cfg.deadFeatureWindow !== null) min(cfg.deadFeatureWindow, 'dead_feature_window', 0);
  // Saved in config.json with the kinds' fields only (TopK runs keep sparsify's file): kinds only.
  if (cfg.deadFeatureWindow !== null && !hasKindKeys(cfg.sae))
    throw new ConfigError(`${where}: dead_feature_window (SAELens) is for the SAELens kinds and Matryoshka; sparsify's TopK uses dead_feature_threshold (tokens)`);
  if (cfg.normalizeActivations !== 'none' && cfg.sae.transcode)
    throw new ConfigError(`${where}: normalize_activations "${cfg.normalizeActivations}" is for autoencoders (SAELens scales the input only); not with transcode`);
  if (hasKindKeys(cfg.sae) && cfg.auxkAlpha > 0)
    throw new ConfigError(
      `${where}: auxk_alpha is sparsify's AuxK for TopK; ${isSaeLensKind(cfg.sae.activation) ? `activation "${cfg.sae.activation}"` : 'Matryoshka TopK'} takes SAELens's aux_loss_coefficient, so use auxk_alpha 0`,
    );
  if (cfg.lr !== null && cfg.lr < 0) throw new ConfigError(`${where}: lr must be >= 0 (0 or null = default), got ${cfg.lr}`);
  for (const t of cfg.excludeTokens) if (t < 0) throw new ConfigError(`${where}: exclude_tokens must be token ids (>= 0), got ${t}`);
  if (cfg.runName !== null) checkRunName(cfg.runName);
  for (const l of cfg.layers) if (l < 0) throw new ConfigError(`${where}: layers must be >= 0, got ${l}`);
  // sparsify __post_init__
  if (cfg.layers.length > 0 && cfg.layerStride !== 1) throw new ConfigError(`${where}: cannot specify both layers and layer_stride`);
  if (cfg.distributeModules && cfg.lossFn !== 'fvu') throw new ConfigError(`${where}: distribute_modules is not compatible with loss_fn "${cfg.lossFn}"`);
  if (cfg.initSeeds.length === 0) throw new ConfigError(`${where}: must specify at least one random seed (init_seeds)`);
  if (new Set(cfg.initSeeds).size !== cfg.initSeeds.length) throw new ConfigError(`${where}: init_seeds has duplicates: ${JSON.stringify(cfg.initSeeds)}`);
  if (cfg.microAccSteps > 1 && cfg.lossFn !== 'fvu') throw new ConfigError(`${where}: micro_acc_steps > 1 needs loss_fn "fvu" (PR #138)`);
  // Trainer.__init__ assertion
  if (!opts.resolved && cfg.hookpoints.length > 0 && cfg.layers.length > 0) throw new ConfigError(`${where}: cannot specify both hookpoints and layers`);
}

const FLOAT_KEYS = new Set(['lr', 'auxk_alpha', 'l1_coefficient', 'l0_coefficient', 'max_grad_norm', 'aux_loss_coefficient', 'pre_act_loss_coefficient']);

/** snake_case dict in dataclass field order (TrainConfig fields, then RunConfig's own). */
export function trainConfigToDict(cfg: TrainConfig | RunConfig): Record<string, unknown> {
  const out: Record<string, unknown> = { sae: coderConfigToDict(cfg.sae) };
  const src = cfg as unknown as Record<string, unknown>;
  // A plain sparsify run's config.json stays sparsify's, key for key.
  const kindFields = hasKindKeys(cfg.sae) || cfg.normalizeActivations !== 'none' || (cfg.maxGradNorm ?? 0) > 0 ? SAELENS_TRAIN_FIELDS : [];
  const fields = 'model' in cfg ? [...TRAIN_FIELDS, ...kindFields, ...RUN_FIELDS] : [...TRAIN_FIELDS, ...kindFields];
  for (const f of fields) {
    let v = src[f.field];
    if (f.key === 'hf_token') v = null; // never persisted (sparsify's encoding_fn returns None)
    if (FLOAT_KEYS.has(f.key) && typeof v === 'number') v = new PyFloat(v);
    out[f.key] = Array.isArray(v) ? [...v] : v;
  }
  return out;
}

/** The exact config.json text (Python json.dump of to_dict(), no indent, no trailing newline). */
export function trainConfigJson(cfg: TrainConfig | RunConfig): string {
  return pyJson(trainConfigToDict(cfg));
}

/** Reads a config.json dict (unknown keys ignored, missing keys defaulted), validated. */
export function trainConfigFromDict(d: unknown, where = 'config.json'): RunConfig | TrainConfig {
  if (d === null || typeof d !== 'object' || Array.isArray(d)) throw new ConfigError(`${where}: not a JSON object`);
  const o = d as Record<string, unknown>;
  const init: Record<string, unknown> = {};
  const isRun = 'model' in o || 'dataset' in o;
  for (const f of isRun ? [...TRAIN_FIELDS, ...SAELENS_TRAIN_FIELDS, ...RUN_FIELDS] : [...TRAIN_FIELDS, ...SAELENS_TRAIN_FIELDS]) if (f.key in o) init[f.field] = o[f.key];
  const sae: Partial<SparseCoderConfig> = {};
  if (o.sae && typeof o.sae === 'object') {
    const s = o.sae as Record<string, unknown>;
    for (const f of CODER_FIELDS) if (f.key in s && s[f.key] !== null) (sae as Record<string, unknown>)[f.field] = s[f.key];
  }
  init.sae = sae;
  try {
    return isRun ? runConfig(init as RunConfigInit, { resolved: true }) : trainConfig(init as TrainConfigInit, { resolved: true });
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError(`${where}: ${e.message}`);
    throw e;
  }
}

/**
 * Only the local loss (`fvu`) is implemented; end-to-end training through the LM (`ce`, `kl`)
 * is not. Checked once here for the Trainer and the CLI (which calls it before loading a model).
 */
export function assertSupportedLossFn(cfg: TrainConfig, where = 'TrainConfig'): void {
  if (cfg.lossFn !== 'fvu')
    throw new ConfigError(`${where}: loss_fn "${cfg.lossFn}" (end-to-end training through the LM) is not implemented; use "fvu"`);
}
