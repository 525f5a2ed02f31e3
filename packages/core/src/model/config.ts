/**
 * Reads a HuggingFace config.json into the native forward's spec. Both transformers 5 keys
 * (rope_parameters, layer_types) and older ones (rope_theta, rope_scaling, rotary_pct,
 * rotary_emb_base) are understood.
 */
import { ConfigError } from '../errors.js';
import { readRopeParams, ropeInvFreq } from './rope.js';

export type ModelFamily = 'gpt2' | 'neox' | 'llama' | 'gemma' | 'gemma2';

/** config.architectures[0] -> family; `*Model` (base models, no LM head) are accepted too. */
const ARCHITECTURES: Record<string, { family: ModelFamily; causalLM: boolean; qwen?: boolean }> = {
  GPT2LMHeadModel: { family: 'gpt2', causalLM: true },
  GPT2Model: { family: 'gpt2', causalLM: false },
  GPTNeoXForCausalLM: { family: 'neox', causalLM: true },
  GPTNeoXModel: { family: 'neox', causalLM: false },
  LlamaForCausalLM: { family: 'llama', causalLM: true },
  LlamaModel: { family: 'llama', causalLM: false },
  Qwen2ForCausalLM: { family: 'llama', causalLM: true, qwen: true },
  Qwen2Model: { family: 'llama', causalLM: false, qwen: true },
  GemmaForCausalLM: { family: 'gemma', causalLM: true },
  GemmaModel: { family: 'gemma', causalLM: false },
  Gemma2ForCausalLM: { family: 'gemma2', causalLM: true },
  Gemma2Model: { family: 'gemma2', causalLM: false },
};

export const SUPPORTED_ARCHITECTURES: readonly string[] = Object.keys(ARCHITECTURES);

/** transformers' ACT2FN names -> the native activations. */
const ACTIVATIONS: Record<string, string> = {
  gelu_new: 'gelu_tanh',
  gelu_pytorch_tanh: 'gelu_tanh',
  gelu_python_tanh: 'gelu_tanh',
  'gelu_tanh': 'gelu_tanh',
  gelu: 'gelu',
  gelu_python: 'gelu',
  gelu_fast: 'gelu_fast',
  quick_gelu: 'quick_gelu',
  silu: 'silu',
  swish: 'silu',
  relu: 'relu',
};

/** The object handed to the native NativeModel constructor. */
export interface NativeSpec {
  family: ModelFamily;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  inter: number;
  vocab: number;
  maxPos: number;
  norm: 'layernorm' | 'rms' | 'rms1p';
  eps: number;
  act: string;
  rotaryDim: number;
  invFreq: number[];
  ropeAttentionScaling: number;
  parallelResidual: boolean;
  attnScale: number;
  scaleByInverseLayer: boolean;
  attnSoftcap: number;
  finalSoftcap: number;
  /** sqrt(hidden) for Gemma, rounded to the embedding's dtype later; 0: none. */
  embedScale: number;
  slidingWindow: number[];
}

export interface ParsedModelConfig {
  architecture: string;
  family: ModelFamily;
  /** True for *ForCausalLM / *LMHeadModel (the checkpoint may carry an LM head). */
  causalLM: boolean;
  tieWordEmbeddings: boolean;
  spec: NativeSpec;
}

type Json = Record<string, unknown>;

function int(config: Json, keys: string[], what: string, dflt?: number): number {
  for (const k of keys) {
    const v = config[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
      throw new ConfigError(`config.json: '${k}' must be a non-negative integer, got ${JSON.stringify(v)}`);
    return v;
  }
  if (dflt !== undefined) return dflt;
  throw new ConfigError(`config.json: missing ${what} (${keys.join(' or ')})`);
}

/** As int(), and at least 1 (a size, a head count): 0 would divide by zero further on. */
function positiveInt(config: Json, keys: string[], what: string): number {
  const v = int(config, keys, what);
  if (v < 1) throw new ConfigError(`config.json: '${keys.find((k) => config[k] !== undefined && config[k] !== null)}' (${what}) must be >= 1, got ${v}`);
  return v;
}

function float(config: Json, keys: string[], dflt: number): number {
  for (const k of keys) {
    const v = config[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number') throw new ConfigError(`config.json: '${k}' must be a number, got ${JSON.stringify(v)}`);
    return v;
  }
  return dflt;
}

function activation(config: Json, keys: string[], dflt: string): string {
  let name = dflt;
  for (const k of keys) {
    if (typeof config[k] === 'string') {
      name = config[k] as string;
      break;
    }
  }
  const act = ACTIVATIONS[name];
  if (!act)
    throw new ConfigError(`config.json: activation '${name}' is not supported (supported: ${Object.keys(ACTIVATIONS).join(', ')})`);
  return act;
}

/** Which layers use sliding-window attention and with what window (0: full attention). */
function slidingWindows(config: Json, layers: number, family: ModelFamily, qwen: boolean): number[] {
  const window = typeof config.sliding_window === 'number' ? config.sliding_window : 0;
  const types = config.layer_types;
  if (Array.isArray(types)) {
    if (types.length !== layers)
      throw new ConfigError(`config.json: layer_types has ${types.length} entries for ${layers} layers`);
    return types.map((t) => {
      if (t === 'sliding_attention') {
        if (!window) throw new ConfigError(`config.json: layer_types uses sliding_attention but sliding_window is not set`);
        return window;
      }
      if (t === 'full_attention') return 0;
      throw new ConfigError(`config.json: layer type '${String(t)}' is not supported`);
    });
  }
  // Older configs: Gemma2 alternates (even layers slide); Qwen2 slides from max_window_layers on.
  if (family === 'gemma2' && window) return Array.from({ length: layers }, (_, i) => (i % 2 === 0 ? window : 0));
  if (qwen && config.use_sliding_window === true && window) {
    const from = typeof config.max_window_layers === 'number' ? config.max_window_layers : 0;
    return Array.from({ length: layers }, (_, i) => (i >= from ? window : 0));
  }
  return new Array(layers).fill(0);
}

export function parseModelConfig(config: Json): ParsedModelConfig {
  if (config === null || typeof config !== 'object' || Array.isArray(config))
    throw new ConfigError('config.json is not a JSON object');
  const archs = config.architectures;
  const architecture = Array.isArray(archs) && typeof archs[0] === 'string' ? (archs[0] as string) : undefined;
  if (!architecture)
    throw new ConfigError(
      `config.json has no 'architectures' entry (model_type ${JSON.stringify(config.model_type)}); supported: ${SUPPORTED_ARCHITECTURES.join(', ')}`,
    );
  const arch = ARCHITECTURES[architecture];
  if (!arch)
    throw new ConfigError(
      `architecture '${architecture}' is not supported (supported: ${SUPPORTED_ARCHITECTURES.join(', ')})`,
    );
  const { family } = arch;
  let spec: NativeSpec;
  let tieDefault: boolean;
  if (family === 'gpt2') {
    const hidden = positiveInt(config, ['n_embd', 'hidden_size'], 'hidden size');
    const heads = positiveInt(config, ['n_head', 'num_attention_heads'], 'number of heads');
    if (hidden % heads) throw new ConfigError(`config.json: n_embd ${hidden} is not divisible by n_head ${heads}`);
    const headDim = hidden / heads;
    spec = {
      family,
      hidden,
      layers: int(config, ['n_layer', 'num_hidden_layers'], 'number of layers'),
      heads,
      kvHeads: heads,
      headDim,
      inter: int(config, ['n_inner'], 'inner size', 4 * hidden),
      vocab: int(config, ['vocab_size'], 'vocab size'),
      maxPos: int(config, ['n_positions', 'max_position_embeddings'], 'max positions'),
      norm: 'layernorm',
      eps: float(config, ['layer_norm_epsilon'], 1e-5),
      act: activation(config, ['activation_function'], 'gelu_new'),
      rotaryDim: 0,
      invFreq: [],
      ropeAttentionScaling: 1,
      parallelResidual: false,
      attnScale: config.scale_attn_weights === false ? 1 : 1 / Math.sqrt(headDim),
      scaleByInverseLayer: config.scale_attn_by_inverse_layer_idx === true,
      attnSoftcap: 0,
      finalSoftcap: 0,
      embedScale: 0,
      slidingWindow: [],
    };
    tieDefault = true;
  } else {
    const hidden = positiveInt(config, ['hidden_size'], 'hidden size');
    const heads = positiveInt(config, ['num_attention_heads'], 'number of heads');
    const layers = positiveInt(config, ['num_hidden_layers'], 'number of layers');
    const headDim = family === 'neox' ? hidden / heads : int(config, ['head_dim'], 'head_dim', Math.floor(hidden / heads));
    if (!Number.isInteger(headDim)) throw new ConfigError(`config.json: hidden_size ${hidden} is not divisible by ${heads} heads`);
    const rope = readRopeParams(config);
    const rotaryDim = Math.floor(headDim * rope.partialRotaryFactor);
    if (rotaryDim % 2 || rotaryDim <= 0)
      throw new ConfigError(`config.json: rotary dimension ${rotaryDim} (head_dim ${headDim} x ${rope.partialRotaryFactor}) must be even and positive`);
    const { invFreq, attentionScaling } = ropeInvFreq(rope, rotaryDim);
    const gemmaLike = family === 'gemma' || family === 'gemma2';
    spec = {
      family,
      hidden,
      layers,
      heads,
      kvHeads: family === 'neox' ? heads : int(config, ['num_key_value_heads'], 'kv heads', heads),
      headDim,
      inter: int(config, ['intermediate_size'], 'intermediate size'),
      vocab: int(config, ['vocab_size'], 'vocab size'),
      maxPos: int(config, ['max_position_embeddings'], 'max positions'),
      norm: family === 'neox' ? 'layernorm' : gemmaLike ? 'rms1p' : 'rms',
      eps: family === 'neox' ? float(config, ['layer_norm_eps'], 1e-5) : float(config, ['rms_norm_eps'], 1e-6),
      act:
        family === 'gemma2'
          ? activation(config, ['hidden_activation', 'hidden_act'], 'gelu_pytorch_tanh')
          : family === 'gemma'
            ? // transformers maps Gemma's legacy hidden_act "gelu" to the tanh approximation
              activation(
                { hidden_act: config.hidden_act === 'gelu' ? 'gelu_pytorch_tanh' : config.hidden_act, hidden_activation: config.hidden_activation },
                ['hidden_act', 'hidden_activation'],
                'gelu_pytorch_tanh',
              )
            : activation(config, ['hidden_act'], family === 'neox' ? 'gelu' : 'silu'),
      rotaryDim,
      invFreq,
      ropeAttentionScaling: attentionScaling,
      parallelResidual: family === 'neox' ? config.use_parallel_residual !== false : false,
      attnScale:
        family === 'gemma2'
          ? Math.pow(float(config, ['query_pre_attn_scalar'], headDim), -0.5)
          : Math.pow(headDim, -0.5),
      scaleByInverseLayer: false,
      attnSoftcap: family === 'gemma2' ? float(config, ['attn_logit_softcapping'], 0) : 0,
      finalSoftcap: family === 'gemma2' ? float(config, ['final_logit_softcapping'], 0) : 0,
      embedScale: gemmaLike ? Math.sqrt(hidden) : 0,
      slidingWindow: slidingWindows(config, layers, family, arch.qwen === true),
    };
    tieDefault = gemmaLike;
  }
  if (spec.heads % spec.kvHeads)
    throw new ConfigError(`config.json: ${spec.heads} attention heads are not a multiple of ${spec.kvHeads} key/value heads`);
  const tie = typeof config.tie_word_embeddings === 'boolean' ? config.tie_word_embeddings : tieDefault;
  return { architecture, family, causalLM: arch.causalLM, tieWordEmbeddings: tie, spec };
}
