/**
 * SparseCoderConfig (alias SaeConfig): every field and default of sparsify 1.3's dataclass.
 * On disk (cfg.json) the keys are snake_case in sparsify's field order with `d_in` last, written
 * with Python json.dump's default separators and no trailing newline, so files are byte-identical.
 */
import { ConfigError } from './errors.js';
import { pyJson } from './py-json.js';

export type Activation = 'topk' | 'groupmax';

export interface SparseCoderConfig {
  /** Sparsifying activation. */
  activation: Activation;
  /** num_latents = d_in * expansionFactor when numLatents is 0. */
  expansionFactor: number;
  /** Keep decoder rows at unit norm (ignored for transcoders). */
  normalizeDecoder: boolean;
  /** Explicit latent count; 0 means d_in * expansionFactor. */
  numLatents: number;
  /** Active latents per token (TopK k, or number of GroupMax groups). */
  k: number;
  /** Add the Multi-TopK (4k) loss term. */
  multiTopk: boolean;
  /** Add a linear skip connection W_skip [d_in, d_in]. */
  skipConnection: boolean;
  /** Predict the module's output from its input. */
  transcode: boolean;
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

/** A full config from partial camelCase fields, validated. */
export function sparseCoderConfig(partial: Partial<SparseCoderConfig> = {}): SparseCoderConfig {
  const cfg = { ...DEFAULT_SPARSE_CODER_CONFIG, ...partial };
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
  if (cfg.activation !== 'topk' && cfg.activation !== 'groupmax')
    throw new ConfigError(`${where}: activation must be "topk" or "groupmax", got ${JSON.stringify(cfg.activation)}`);
  int(cfg.expansionFactor, 'expansion_factor', 1);
  int(cfg.numLatents, 'num_latents', 0);
  int(cfg.k, 'k', 1);
  for (const b of ['normalizeDecoder', 'multiTopk', 'skipConnection', 'transcode'] as const)
    if (typeof cfg[b] !== 'boolean') throw new ConfigError(`${where}: ${b} must be a boolean, got ${JSON.stringify(cfg[b])}`);
}

/**
 * What makes k unusable for a coder with M latents (k in [1, M]; groupmax: M divisible by k;
 * multi_topk: 4k <= M), or undefined. Callers throw it as their error class.
 */
export function coderSpecProblem(cfg: Pick<SparseCoderConfig, 'k' | 'activation' | 'multiTopk'>, M: number): string | undefined {
  const { k, activation, multiTopk } = cfg;
  if (!Number.isInteger(k) || k < 1) return `k must be an integer >= 1, got ${k}`;
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
  for (const [field, key] of CODER_CONFIG_KEYS) {
    if (key in o && o[key] !== null) (partial as Record<string, unknown>)[field] = o[key];
  }
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
  return out;
}

/** The exact bytes sparsify writes to cfg.json. */
export function coderConfigJson(cfg: SparseCoderConfig, dIn: number): string {
  return pyJson({ ...coderConfigToDict(cfg), d_in: dIn });
}
