/**
 * SparseCoderConfig (alias SaeConfig): every field and default of sparsify 1.3's dataclass.
 * On disk (cfg.json) the keys are snake_case in sparsify's field order with `d_in` last, written
 * with Python json.dump's default separators and no trailing newline, so files are byte-identical.
 */
import { ConfigError } from './errors.js';
import { PyFloat, pyJson } from './py-json.js';

/**
 * topk / groupmax: sparsify's kinds. jumprelu, batchtopk, relu: SAELens's trainable kinds
 * (docs/sae.md, "SAELens kinds"); their extra settings below are written to cfg.json only for them.
 */
export type Activation = 'topk' | 'groupmax' | 'jumprelu' | 'batchtopk' | 'relu';
export const ACTIVATIONS: readonly Activation[] = ['topk', 'groupmax', 'jumprelu', 'batchtopk', 'relu'];
export type SaeLensKind = 'jumprelu' | 'batchtopk' | 'relu';

/** True for the kinds trained by SAELens's rules (threshold / batch-top-k kernels) rather than sparsify's. */
export function isSaeLensKind(a: Activation): a is SaeLensKind {
  return a === 'jumprelu' || a === 'batchtopk' || a === 'relu';
}

export interface SparseCoderConfig {
  /** Sparsifying activation. */
  activation: Activation;
  /** num_latents = d_in * expansionFactor when numLatents is 0. */
  expansionFactor: number;
  /** Keep decoder rows at unit norm (ignored for transcoders). */
  normalizeDecoder: boolean;
  /** Explicit latent count; 0 means d_in * expansionFactor. */
  numLatents: number;
  /** Active latents per token (TopK k, or number of GroupMax groups; batchtopk: the average, a float > 0). */
  k: number;
  /** Add the Multi-TopK (4k) loss term. */
  multiTopk: boolean;
  /** Add a linear skip connection W_skip [d_in, d_in]. */
  skipConnection: boolean;
  /** Predict the module's output from its input. */
  transcode: boolean;
  /** Matryoshka prefix widths (strictly increasing, <= num_latents; batchtopk or topk). Empty: off. */
  matryoshkaPrefixes: number[];
  /** jumprelu: initial threshold (log_threshold starts at its log). */
  jumpreluInitThreshold: number;
  /** jumprelu: width of the rectangle kernel of the threshold's straight-through gradient. */
  jumpreluBandwidth: number;
  /** jumprelu: L0 penalty as a step (DeepMind) or tanh(scale f n) (Anthropic). */
  jumpreluSparsityLossMode: 'step' | 'tanh';
  jumpreluTanhScale: number;
  /** batchtopk: rate of the running inference threshold, θ ← (1 − lr) θ + lr min(kept). */
  topkThresholdLr: number;
  /** SAELens kinds: encode x - b_dec (true, SAELens's default) or x. */
  applyBDecToInput: boolean;
  /** relu: p of the penalty's p-norm, ‖f ⊙ n‖_p (SAELens lp_norm; 1 = Σ f_i n_i). */
  lpNorm: number;
}
export type SaeConfig = SparseCoderConfig;

export const DEFAULT_SPARSE_CODER_CONFIG: Readonly<SparseCoderConfig> = Object.freeze({
  activation: 'topk',
  expansionFactor: 32,
  normalizeDecoder: true,
  numLatents: 0,
  k: 32,
  multiTopk: false,
  skipConnection: false,
  transcode: false,
  matryoshkaPrefixes: [],
  jumpreluInitThreshold: 0.01,
  jumpreluBandwidth: 0.05,
  jumpreluSparsityLossMode: 'step',
  jumpreluTanhScale: 4.0,
  topkThresholdLr: 0.01,
  applyBDecToInput: true,
  lpNorm: 1.0,
});

/** snake_case key of each field, in sparsify's order (the cfg.json key order). */
export const CODER_CONFIG_KEYS: readonly [keyof SparseCoderConfig, string][] = [
  ['activation', 'activation'],
  ['expansionFactor', 'expansion_factor'],
  ['normalizeDecoder', 'normalize_decoder'],
  ['numLatents', 'num_latents'],
  ['k', 'k'],
  ['multiTopk', 'multi_topk'],
  ['skipConnection', 'skip_connection'],
  ['transcode', 'transcode'],
];

/** SAELens-kind settings (SAELens's key names), after sparsify's keys in cfg.json when they apply. */
export const KIND_CONFIG_KEYS: readonly [keyof SparseCoderConfig, string][] = [
  ['matryoshkaPrefixes', 'matryoshka_prefixes'],
  ['jumpreluInitThreshold', 'jumprelu_init_threshold'],
  ['jumpreluBandwidth', 'jumprelu_bandwidth'],
  ['jumpreluSparsityLossMode', 'jumprelu_sparsity_loss_mode'],
  ['jumpreluTanhScale', 'jumprelu_tanh_scale'],
  ['topkThresholdLr', 'topk_threshold_lr'],
  ['applyBDecToInput', 'apply_b_dec_to_input'],
];
const KIND_FLOAT_KEYS = new Set(['jumprelu_init_threshold', 'jumprelu_bandwidth', 'jumprelu_tanh_scale', 'topk_threshold_lr']);
/** relu's lp_norm: in cfg.json only when it is not 1, so files written before it stay byte for byte. */
const LP_NORM_KEY = 'lp_norm';

/** Whether cfg.json carries the SAELens-kind keys (never for a plain sparsify TopK / GroupMax coder: its bytes stay sparsify's). */
export function hasKindKeys(cfg: Pick<SparseCoderConfig, 'activation' | 'matryoshkaPrefixes'>): boolean {
  return isSaeLensKind(cfg.activation) || (cfg.matryoshkaPrefixes?.length ?? 0) > 0;
}

/** A full config from partial camelCase fields, validated. */
export function sparseCoderConfig(partial: Partial<SparseCoderConfig> = {}): SparseCoderConfig {
  const cfg = { ...DEFAULT_SPARSE_CODER_CONFIG, ...partial };
  cfg.matryoshkaPrefixes = [...(cfg.matryoshkaPrefixes ?? [])];
  validateCoderConfig(cfg, 'SparseCoderConfig');
  return cfg;
}

/** The TranscoderConfig helper of sparsify: transcode = true. */
export function transcoderConfig(partial: Partial<SparseCoderConfig> = {}): SparseCoderConfig {
  return sparseCoderConfig({ ...partial, transcode: true });
}

export function validateCoderConfig(cfg: SparseCoderConfig, where: string): void {
  const int = (v: unknown, name: string, min: number) => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min)
      throw new ConfigError(`${where}: ${name} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  };
  if (!ACTIVATIONS.includes(cfg.activation))
    throw new ConfigError(`${where}: activation must be one of ${ACTIVATIONS.map((a) => JSON.stringify(a)).join(', ')}, got ${JSON.stringify(cfg.activation)}`);
  const pos = (v: unknown, name: string) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || !(v > 0)) throw new ConfigError(`${where}: ${name} must be a finite number > 0, got ${JSON.stringify(v)}`);
  };
  pos(cfg.jumpreluInitThreshold, 'jumprelu_init_threshold');
  pos(cfg.jumpreluBandwidth, 'jumprelu_bandwidth');
  pos(cfg.jumpreluTanhScale, 'jumprelu_tanh_scale');
  if (typeof cfg.topkThresholdLr !== 'number' || !(cfg.topkThresholdLr >= 0 && cfg.topkThresholdLr <= 1))
    throw new ConfigError(`${where}: topk_threshold_lr must be a number in [0, 1], got ${JSON.stringify(cfg.topkThresholdLr)}`);
  if (cfg.jumpreluSparsityLossMode !== 'step' && cfg.jumpreluSparsityLossMode !== 'tanh')
    throw new ConfigError(`${where}: jumprelu_sparsity_loss_mode must be "step" or "tanh", got ${JSON.stringify(cfg.jumpreluSparsityLossMode)}`);
  const pre = cfg.matryoshkaPrefixes;
  if (!Array.isArray(pre) || !pre.every((v) => Number.isSafeInteger(v) && v >= 1))
    throw new ConfigError(`${where}: matryoshka_prefixes must be a list of integers >= 1, got ${JSON.stringify(pre)}`);
  for (let i = 1; i < pre.length; i++)
    if (pre[i] <= pre[i - 1]) throw new ConfigError(`${where}: matryoshka_prefixes must be strictly increasing, got ${JSON.stringify(pre)}`);
  const p = cfg.lpNorm;
  if (typeof p !== 'number' || !Number.isFinite(p) || !(p >= 1))
    throw new ConfigError(`${where}: lp_norm must be a finite number >= 1 (the p of relu's ‖f ⊙ n‖_p penalty), got ${JSON.stringify(p)}`);
  if (p !== 1 && cfg.activation !== 'relu')
    throw new ConfigError(`${where}: lp_norm ${p} applies to activation "relu" only (this coder is "${cfg.activation}")`);
  if (typeof cfg.applyBDecToInput !== 'boolean') throw new ConfigError(`${where}: apply_b_dec_to_input must be a boolean, got ${JSON.stringify(cfg.applyBDecToInput)}`);
  if (!cfg.applyBDecToInput && !isSaeLensKind(cfg.activation) && pre.length === 0)
    throw new ConfigError(`${where}: apply_b_dec_to_input false needs a SAELens kind (relu, jumprelu, batchtopk) or matryoshka_prefixes; sparsify's ${cfg.activation} always encodes x - b_dec`);
  if (pre.length > 0 && cfg.activation !== 'batchtopk' && cfg.activation !== 'topk')
    throw new ConfigError(`${where}: matryoshka_prefixes needs activation "batchtopk" or "topk" (Matryoshka over "${cfg.activation}" is not implemented)`);
  if (isSaeLensKind(cfg.activation) || pre.length > 0)
    for (const [b, key] of [['multiTopk', 'multi_topk'], ['skipConnection', 'skip_connection'], ['transcode', 'transcode']] as const)
      if (cfg[b] === true)
        throw new ConfigError(`${where}: ${key} is not available with activation "${cfg.activation}"${pre.length ? ' and matryoshka_prefixes' : ''} (sparsify TopK / GroupMax only)`);
  int(cfg.expansionFactor, 'expansion_factor', 1);
  int(cfg.numLatents, 'num_latents', 0);
  if (cfg.activation === 'batchtopk') {
    // SAELens's BatchTopK k is a float: the average L0, floor(k · rows) kept per batch.
    if (typeof cfg.k !== 'number' || !Number.isFinite(cfg.k) || !(cfg.k > 0))
      throw new ConfigError(`${where}: k must be a finite number > 0 for activation "batchtopk", got ${JSON.stringify(cfg.k)}`);
  } else int(cfg.k, 'k', 1);
  for (const b of ['normalizeDecoder', 'multiTopk', 'skipConnection', 'transcode'] as const)
    if (typeof cfg[b] !== 'boolean') throw new ConfigError(`${where}: ${b} must be a boolean, got ${JSON.stringify(cfg[b])}`);
}

/**
 * What makes k unusable for a coder with M latents (k in [1, M]; groupmax: M divisible by k;
 * multi_topk: 4k <= M), or undefined. Callers throw it as their error class.
 */
export function coderSpecProblem(cfg: Pick<SparseCoderConfig, 'k' | 'activation' | 'multiTopk'>, M: number): string | undefined {
  const { k, activation, multiTopk } = cfg;
  if (activation === 'relu' || activation === 'jumprelu') return undefined; // k is not used by threshold kinds
  if (activation === 'batchtopk') {
    if (typeof k !== 'number' || !Number.isFinite(k) || !(k > 0)) return `k must be a number > 0, got ${k}`;
  } else if (!Number.isInteger(k) || k < 1) return `k must be an integer >= 1, got ${k}`;
  if (k > M) return `k must be <= num_latents: k=${k} is larger than num_latents=${M}`;
  if (activation === 'groupmax' && M % k !== 0) return `groupmax needs num_latents (${M}) divisible by k (${k})`;
  if (multiTopk && 4 * k > M) return `multi_topk needs 4*k (${4 * k}) <= num_latents (${M})`;
  return undefined;
}

/** M = num_latents || d_in * expansion_factor. */
export function numLatentsOf(cfg: SparseCoderConfig, dIn: number): number {
  return cfg.numLatents || dIn * cfg.expansionFactor;
}

/**
 * Parses a cfg.json object of any historical variant: unknown keys ignored, missing keys
 * defaulted, `signed: true` rejected (signed SAEs of mid-2024 have no ReLU; not supported).
 */
export function coderConfigFromJson(obj: unknown, where = 'cfg.json'): { cfg: SparseCoderConfig; dIn: number } {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new ConfigError(`${where}: not a JSON object`);
  const o = obj as Record<string, unknown>;
  if (o.signed === true)
    throw new ConfigError(`${where}: "signed": true (signed SAE, mid-2024) is not supported: it has no ReLU and selects by |pre-activation|`);
  const partial: Partial<SparseCoderConfig> = {};
  for (const [field, key] of [...CODER_CONFIG_KEYS, ...KIND_CONFIG_KEYS]) {
    if (key in o && o[key] !== null) (partial as Record<string, unknown>)[field] = o[key];
  }
  if (LP_NORM_KEY in o && o[LP_NORM_KEY] !== null) partial.lpNorm = o[LP_NORM_KEY] as number;
  const dIn = o.d_in;
  if (typeof dIn !== 'number' || !Number.isSafeInteger(dIn) || dIn < 1) throw new ConfigError(`${where}: d_in must be a positive integer, got ${JSON.stringify(dIn)}`);
  const cfg = { ...DEFAULT_SPARSE_CODER_CONFIG, ...partial };
  validateCoderConfig(cfg, where);
  return { cfg, dIn };
}

/** snake_case object in sparsify's key order (without d_in). */
export function coderConfigToDict(cfg: SparseCoderConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [field, key] of CODER_CONFIG_KEYS) out[key] = cfg[field];
  if (hasKindKeys(cfg))
    for (const [field, key] of KIND_CONFIG_KEYS) {
      const v = cfg[field];
      out[key] = KIND_FLOAT_KEYS.has(key) ? new PyFloat(v as number) : Array.isArray(v) ? [...v] : v;
    }
  if (cfg.lpNorm !== undefined && cfg.lpNorm !== 1) out[LP_NORM_KEY] = new PyFloat(cfg.lpNorm);
  return out;
}

/** The exact bytes sparsify writes to cfg.json. */
export function coderConfigJson(cfg: SparseCoderConfig, dIn: number): string {
  return pyJson({ ...coderConfigToDict(cfg), d_in: dIn });
}
