/**
 * SAELens `cfg.json`: reading every version (6.x with `metadata`, and the flat pre-6 layout,
 * upgraded the way SAELens 6.18's `handle_pre_6_0_config` does) and writing the 6.x layout.
 * Facts from SAELens 6.18.0 `sae_lens/saes/sae.py` and `loading/pretrained_sae_loaders.py`
 * (github.com/jbloomAus/SAELens), summarised in docs/saelens.md.
 */
import { ConfigError } from '../errors.js';

/** Inference architectures we run, plus SAELens's BatchTopK training checkpoints. */
export type SaeLensArchitecture = 'standard' | 'gated' | 'jumprelu' | 'topk' | 'batchtopk' | 'matryoshka_batchtopk';
const ARCHITECTURES: readonly string[] = ['standard', 'gated', 'jumprelu', 'topk', 'batchtopk', 'matryoshka_batchtopk'];
/** Registered by SAELens but not (yet) loadable here: named in the error. */
const KNOWN_UNSUPPORTED = ['transcoder', 'skip_transcoder', 'jumprelu_transcoder', 'temporal', 'matching_pursuit', 'jumprelu_skip_transcoder'];

export const SAELENS_DTYPES: readonly string[] = ['float32', 'float64', 'float16', 'bfloat16'];
export const SAELENS_NORMALIZE_MODES: readonly string[] = ['none', 'expected_average_only_in', 'constant_norm_rescale', 'layer_norm'];

/** Keys that pre-6 configs kept at the top level and 6.x keeps under `metadata`. */
const LLM_METADATA_KEYS = [
  'model_name',
  'model_class_name',
  'hook_name',
  'hook_head_index',
  'model_from_pretrained_kwargs',
  'prepend_bos',
  'exclude_special_tokens',
  'neuronpedia_id',
  'context_size',
  'seqpos_slice',
  'dataset_path',
  'sae_lens_version',
  'sae_lens_training_version',
  'sequence_separator_token',
  'disable_concat_sequences',
];

export interface SaeLensConfig {
  architecture: SaeLensArchitecture;
  dIn: number;
  dSae: number;
  /** Torch dtype name without the `torch.` prefix; every tensor is cast to it on load. */
  dtype: string;
  device: string;
  applyBDecToInput: boolean;
  normalizeActivations: string;
  reshapeActivations: 'none' | 'hook_z';
  /** topk / batchtopk: k (a float "average L0" for batchtopk). */
  k?: number;
  /** topk: the encoder's h is multiplied by the decoder row norms before TopK (decode divides). */
  rescaleActsByDecoderNorm: boolean;
  /** matryoshka_batchtopk checkpoints. */
  matryoshkaWidths?: number[];
  metadata: Record<string, unknown>;
  /** Architecture-specific keys we do not interpret (training coefficients), kept for writing back. */
  extra: Record<string, unknown>;
  /** True when the file was a pre-6 config (upgraded on read). */
  upgraded: boolean;
}

function majorVersion(v: unknown): number | undefined {
  if (typeof v !== 'string') return undefined;
  const m = /^v?(\d+)\./.exec(v);
  return m ? Number(m[1]) : undefined;
}

function int(o: Record<string, unknown>, key: string, where: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw new ConfigError(`${where}: ${key} must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

/** The pre-6 → 6 upgrade: renames, defaults, topk from activation_fn_kwargs, metadata split. */
function upgradePre6(o: Record<string, unknown>): Record<string, unknown> {
  const rename: Record<string, string> = {
    hook_point: 'hook_name',
    hook_point_layer: 'hook_layer',
    hook_point_head_index: 'hook_head_index',
    activation_fn_str: 'activation_fn',
    activation_fn: 'activation_fn',
  };
  const c: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) c[rename[k] ?? k] = v;
  c.prepend_bos ??= true;
  c.apply_b_dec_to_input ??= true;
  c.architecture ??= 'standard';
  c.activation_fn ??= 'relu';
  c.device ??= 'cpu';
  if (typeof c.normalize_activations === 'boolean') c.normalize_activations = c.normalize_activations ? 'expected_average_only_in' : 'none';
  c.normalize_activations ??= 'none';
  c.reshape_activations ??= typeof c.hook_name === 'string' && c.hook_name.includes('hook_z') ? 'hook_z' : 'none';
  const kwargs = c.activation_fn_kwargs as Record<string, unknown> | undefined;
  if (c.activation_fn === 'topk' && kwargs && typeof kwargs === 'object' && 'k' in kwargs) {
    c.architecture = 'topk';
    c.k = kwargs.k;
  }
  const metadata: Record<string, unknown> = {};
  for (const key of LLM_METADATA_KEYS) if (key in c) metadata[key] = c[key];
  const out: Record<string, unknown> = {
    architecture: c.architecture,
    d_in: c.d_in,
    d_sae: c.d_sae,
    dtype: c.dtype,
    device: c.device,
    apply_b_dec_to_input: c.apply_b_dec_to_input,
    normalize_activations: c.normalize_activations,
    reshape_activations: c.reshape_activations,
    metadata,
  };
  if (c.architecture === 'topk') out.k = c.k;
  for (const key of ['rescale_acts_by_decoder_norm', 'jumprelu_init_threshold', 'jumprelu_bandwidth', 'l1_coefficient', 'lp_norm']) if (key in c) out[key] = c[key];
  return out;
}

/** Parses a cfg.json object (any SAELens version) into our view of it. */
export function saeLensConfigFromJson(obj: unknown, where = 'cfg.json'): SaeLensConfig {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new ConfigError(`${where}: not a JSON object`);
  let o = obj as Record<string, unknown>;
  for (const key of ['metadata', 'meta'])
    if (o[key] !== undefined && o[key] !== null && (typeof o[key] !== 'object' || Array.isArray(o[key])))
      throw new ConfigError(`${where}: metadata must be a JSON object, got ${JSON.stringify(o[key])}`);
  const meta0 = (o.metadata ?? o.meta) as Record<string, unknown> | undefined;
  const version = majorVersion(o.sae_lens_version) ?? majorVersion(meta0?.sae_lens_version);
  const upgraded = version === undefined || version < 6;
  if (upgraded) o = upgradePre6(o);
  const arch = o.architecture;
  if (typeof arch !== 'string' || !ARCHITECTURES.includes(arch)) {
    const hint = typeof arch === 'string' && KNOWN_UNSUPPORTED.includes(arch) ? ' (a SAELens architecture this version cannot load)' : '';
    throw new ConfigError(`${where}: architecture ${JSON.stringify(arch)} is not supported${hint}; expected one of ${ARCHITECTURES.join(', ')}`);
  }
  let dtype = typeof o.dtype === 'string' ? o.dtype.replace(/^torch\./, '') : 'float32';
  if (o.dtype === undefined || o.dtype === null) dtype = 'float32';
  if (!SAELENS_DTYPES.includes(dtype)) throw new ConfigError(`${where}: dtype ${JSON.stringify(o.dtype)} is not one of ${SAELENS_DTYPES.join(', ')}`);
  const norm = o.normalize_activations ?? 'none';
  if (typeof norm !== 'string' || !SAELENS_NORMALIZE_MODES.includes(norm))
    throw new ConfigError(`${where}: normalize_activations ${JSON.stringify(norm)} is not one of ${SAELENS_NORMALIZE_MODES.join(', ')}`);
  const reshape = o.reshape_activations ?? 'none';
  if (reshape !== 'none' && reshape !== 'hook_z') throw new ConfigError(`${where}: reshape_activations ${JSON.stringify(reshape)} must be "none" or "hook_z"`);
  const meta = o.metadata ?? o.meta ?? {};
  const applyBDec = o.apply_b_dec_to_input ?? true;
  if (typeof applyBDec !== 'boolean') throw new ConfigError(`${where}: apply_b_dec_to_input must be a boolean, got ${JSON.stringify(applyBDec)}`);
  const cfg: SaeLensConfig = {
    architecture: arch as SaeLensArchitecture,
    dIn: int(o, 'd_in', where),
    dSae: int(o, 'd_sae', where),
    dtype,
    device: typeof o.device === 'string' ? o.device : 'cpu',
    applyBDecToInput: applyBDec,
    normalizeActivations: norm,
    reshapeActivations: reshape,
    rescaleActsByDecoderNorm: false,
    metadata: { ...(meta as Record<string, unknown>) },
    extra: {},
    upgraded,
  };
  const known = new Set(['architecture', 'd_in', 'd_sae', 'dtype', 'device', 'apply_b_dec_to_input', 'normalize_activations', 'reshape_activations', 'metadata', 'meta', 'k', 'rescale_acts_by_decoder_norm', 'matryoshka_widths']);
  for (const [key, v] of Object.entries(o)) if (!known.has(key)) cfg.extra[key] = v;
  if (arch === 'topk' || arch === 'batchtopk' || arch === 'matryoshka_batchtopk') {
    const k = o.k ?? 100;
    const ok = typeof k === 'number' && k > 0 && (arch !== 'topk' || Number.isSafeInteger(k));
    if (!ok) throw new ConfigError(`${where}: k must be a positive ${arch === 'topk' ? 'integer' : 'number'}, got ${JSON.stringify(k)}`);
    cfg.k = k as number;
    // TopKSAEConfig defaults to false; the training configs default to true.
    const rescale = o.rescale_acts_by_decoder_norm ?? arch !== 'topk';
    if (typeof rescale !== 'boolean') throw new ConfigError(`${where}: rescale_acts_by_decoder_norm must be a boolean`);
    cfg.rescaleActsByDecoderNorm = rescale;
    // batchtopk's float k is the average L0 per row: more than d_sae per row cannot be kept either.
    if ((k as number) > cfg.dSae) throw new ConfigError(`${where}: k=${k} is larger than d_sae=${cfg.dSae}`);
  }
  if (arch === 'matryoshka_batchtopk') {
    const w = o.matryoshka_widths;
    if (!Array.isArray(w) || !w.every((x) => Number.isSafeInteger(x) && x > 0)) throw new ConfigError(`${where}: matryoshka_widths must be a list of positive integers`);
    for (let i = 1; i < w.length; i++)
      if (w[i] <= w[i - 1]) throw new ConfigError(`${where}: matryoshka_widths must be strictly increasing, got ${JSON.stringify(w)}`);
    const over = (w as number[]).find((x) => x > cfg.dSae);
    if (over !== undefined) throw new ConfigError(`${where}: matryoshka_widths has ${over}, larger than d_sae=${cfg.dSae}`);
    cfg.matryoshkaWidths = w as number[];
  }
  return cfg;
}

/** The 6.x cfg.json object SAELens's `save_model` writes for this config. */
export function saeLensConfigToJson(cfg: SaeLensConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {
    d_in: cfg.dIn,
    d_sae: cfg.dSae,
    dtype: cfg.dtype,
    device: cfg.device,
    apply_b_dec_to_input: cfg.applyBDecToInput,
    normalize_activations: cfg.normalizeActivations,
    reshape_activations: cfg.reshapeActivations,
    metadata: cfg.metadata,
  };
  if (cfg.architecture === 'topk') {
    out.k = cfg.k;
    out.rescale_acts_by_decoder_norm = cfg.rescaleActsByDecoderNorm;
  }
  out.architecture = cfg.architecture;
  return out;
}
