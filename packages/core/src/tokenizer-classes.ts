/**
 * The tokenizer transformers 5's `AutoTokenizer.from_pretrained(dir)` builds from a folder, for
 * the tokenizer classes of our architectures: which class it picks
 * (transformers/models/auto/tokenization_auto.py) and the pipeline that class rebuilds around
 * tokenizer.json's vocabulary and merges (the `__init__` of
 * transformers/models/<name>/tokenization_<name>.py; `convert_to_native_format` passes it only
 * the vocabulary, the merges and the post-processor). Real checkpoints ship the same pipeline in
 * their tokenizer.json, so this changes nothing for them; a tokenizer.json with another pipeline
 * (a GPT-2 byte-level file on a qwen2 model, a Metaspace file that splits on spaces under
 * LlamaTokenizer) tokenizes as transformers does, not as the file alone says. Other classes, and
 * folders with remote code (`auto_map`), use tokenizer.json as it is (the `TokenizersBackend`).
 */
type Json = Record<string, unknown>;

/** The model types whose registered class is one of ours (TOKENIZER_MAPPING_NAMES of transformers 5.18). */
const REGISTERED_BY_CLASS: Record<string, string[]> = {
  GPT2Tokenizer: ['blip-2', 'codegen', 'dbrx', 'emu3', 'gpt2', 'gpt_neo', 'gptj', 'hyperclovax_vision_v2', 'instructblip', 'instructblipvideo', 'jais2', 'opt', 'phi', 'starcoder2'],
  GPTNeoXTokenizer: ['falcon_mamba', 'gpt_neox', 'mamba', 'mamba2', 'mpt', 'olmo', 'olmoe', 'rwkv', 'xlstm'],
  LlamaTokenizer: ['idefics', 'idefics2'],
  GemmaTokenizer: ['diffusion_gemma', 'gemma', 'gemma2', 'gemma3', 'gemma3_text', 'gemma3n', 'gemma3n_text', 'recurrent_gemma', 'shieldgemma2', 't5gemma', 'zaya'],
  Qwen2Tokenizer: [
    'audioflamingo3', 'colqwen2', 'cosmos3_omni', 'fun_asr_nano', 'hunyuan_vl', 'internvl', 'lighton_ocr', 'ovis2', 'qianfan_ocr', 'qwen2', 'qwen2_5_omni',
    'qwen2_5_vl', 'qwen2_audio', 'qwen2_moe', 'qwen2_vl', 'qwen3', 'qwen3_asr', 'qwen3_moe', 'qwen3_next', 'qwen3_omni_moe', 'qwen3_vl', 'qwen3_vl_moe', 'vibevoice',
  ],
};
const REGISTERED = new Map(Object.entries(REGISTERED_BY_CLASS).flatMap(([cls, types]) => types.map((t) => [t, cls] as const)));
/** Of those, the ones in MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS: the hub's class is ignored. */
const HUB_CLASS_IGNORED = new Set(['hyperclovax_vision_v2', 'qwen2']);

const flag = (v: unknown, dflt: boolean): boolean => (typeof v === 'boolean' ? v : dflt);

/** The class AutoTokenizer instantiates for this tokenizer_config.json and config.json model_type. */
export function autoTokenizerClass(config: Json, modelType?: string, modelTokenizerClass?: string): string {
  if (config.auto_map !== undefined) return 'TokenizersBackend';
  const strip = (c: unknown) => (typeof c === 'string' ? c.replace(/Fast$/, '') : undefined);
  const hub = strip(config.tokenizer_class) ?? strip(modelTokenizerClass);
  const registered = modelType ? REGISTERED.get(modelType) : undefined;
  if (registered && modelType && HUB_CLASS_IGNORED.has(modelType)) return registered;
  return hub ?? registered ?? 'TokenizersBackend';
}

const bpe = (model: Json, opts: Json): Json => ({
  type: 'BPE',
  vocab: model.vocab,
  merges: model.merges,
  dropout: null,
  unk_token: null,
  continuing_subword_prefix: null,
  end_of_word_suffix: null,
  fuse_unk: false,
  byte_fallback: false,
  ignore_merges: false,
  ...opts,
});
const byteLevel = (addPrefixSpace: boolean, trimOffsets = true, useRegex = true): Json => ({ type: 'ByteLevel', add_prefix_space: addPrefixSpace, trim_offsets: trimOffsets, use_regex: useRegex });
const BYTE_PAIR = { continuing_subword_prefix: '', end_of_word_suffix: '' };
const SPIECE_DECODER = [
  { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
  { type: 'ByteFallback' },
  { type: 'Fuse' },
];
/** Qwen2Tokenizer's PRETOKENIZE_REGEX (transformers/models/qwen2/tokenization_qwen2.py). */
const QWEN2_SPLIT = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;

/** A special token of a config: a string or an AddedToken object's `content`. */
export function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return undefined;
}

/** Normalizer, pre-tokenizer, decoder and model of each class's `__init__`. */
const PIPELINES: Record<string, (model: Json, cfg: Json) => Json> = {
  GPT2Tokenizer: (model, cfg) => ({
    normalizer: null,
    pre_tokenizer: byteLevel(flag(cfg.add_prefix_space, false)),
    decoder: byteLevel(true),
    model: bpe(model, BYTE_PAIR),
  }),
  GPTNeoXTokenizer: (model, cfg) => ({
    normalizer: { type: 'NFC' },
    pre_tokenizer: byteLevel(flag(cfg.add_prefix_space, false), flag(cfg.trim_offsets, true)),
    decoder: byteLevel(true),
    model: bpe(model, BYTE_PAIR),
    // The class calls update_post_processor() itself: no BOS/EOS (the config's flags are dropped).
    post_processor: null,
  }),
  LlamaTokenizer: (model, cfg) => {
    const prefix = flag(cfg.add_prefix_space, true);
    const scheme = prefix ? (flag(cfg.legacy, false) ? 'always' : 'first') : 'never';
    return {
      normalizer: null,
      pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: scheme, split: false },
      decoder: { type: 'Sequence', decoders: [...SPIECE_DECODER, ...(prefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : [])] },
      model: bpe(model, { fuse_unk: true, byte_fallback: true }),
    };
  },
  GemmaTokenizer: (model, cfg) => ({
    normalizer: { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
    pre_tokenizer: { type: 'Split', pattern: { String: ' ' }, behavior: 'MergedWithPrevious', invert: false },
    decoder: { type: 'Sequence', decoders: SPIECE_DECODER },
    model: bpe(model, { fuse_unk: true, byte_fallback: true, unk_token: tokenContent(cfg.unk_token) ?? '<unk>' }),
  }),
  Qwen2Tokenizer: (model, cfg) => ({
    normalizer: { type: 'NFC' },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: QWEN2_SPLIT }, behavior: 'Isolated', invert: false },
        byteLevel(flag(cfg.add_prefix_space, false), true, false),
      ],
    },
    decoder: byteLevel(true),
    model: bpe(model, BYTE_PAIR),
  }),
};

/** Each class's default special tokens (its `__init__` keywords), for the keys a config leaves out. */
const CLASS_SPECIAL_TOKENS: Record<string, Record<string, string | null>> = {
  GPT2Tokenizer: { unk_token: '<|endoftext|>', bos_token: '<|endoftext|>', eos_token: '<|endoftext|>' },
  GPTNeoXTokenizer: { unk_token: '<|endoftext|>', bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', pad_token: '<|padding|>' },
  LlamaTokenizer: { unk_token: '<unk>', bos_token: '<s>', eos_token: '</s>' },
  GemmaTokenizer: { unk_token: '<unk>', bos_token: '<bos>', eos_token: '<eos>', pad_token: '<pad>', mask_token: '<mask>' },
  Qwen2Tokenizer: { unk_token: '<|endoftext|>', bos_token: null, eos_token: '<|endoftext|>', pad_token: '<|endoftext|>' },
};
const SPECIAL_KEYS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'];

/** tokenizer_config.json with the class's default special tokens where it names none. */
export function autoTokenizerConfig(config: Json, className: string): Json {
  return { ...(CLASS_SPECIAL_TOKENS[className] ?? {}), ...config };
}

/**
 * The special tokens of the config that tokenizer.json does not list become special added tokens
 * (transformers' `_post_init` adds them): with the id the vocabulary gives them, else the next id.
 */
function withSpecialTokens(tokenizerJson: Json, config: Json): Json {
  const added = Array.isArray(tokenizerJson.added_tokens) ? [...(tokenizerJson.added_tokens as Json[])] : [];
  const vocab = ((tokenizerJson.model as Json | undefined)?.vocab ?? {}) as Record<string, number>;
  if (Array.isArray(vocab)) return tokenizerJson; // Unigram vocabularies: left as they are
  const have = new Set(added.map((t) => t.content));
  let next = -1; // the first free id, found when a token needs one (a loop: vocabularies reach 256k entries)
  const freeId = () => {
    if (next < 0) {
      next = 0;
      for (const id of Object.values(vocab)) if (id >= next) next = id + 1;
      for (const t of added) if (Number(t.id) >= next) next = Number(t.id) + 1;
    }
    return next++;
  };
  for (const key of SPECIAL_KEYS) {
    const content = tokenContent(config[key]);
    if (!content || have.has(content)) continue;
    have.add(content);
    added.push({ id: vocab[content] ?? freeId(), content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  }
  return added.length === (tokenizerJson.added_tokens as unknown[] | undefined)?.length ? tokenizerJson : { ...tokenizerJson, added_tokens: added };
}

/**
 * tokenizer.json as AutoTokenizer runs it (`config` from autoTokenizerConfig): for our classes,
 * the class's pipeline around the file's BPE vocabulary and merges and its post-processor (what
 * transformers keeps from the file); the file's own pipeline for the TokenizersBackend and for
 * classes not emulated here; the config's special tokens added where the file lacks them.
 */
export function autoTokenizerJson(tokenizerJson: Json, config: Json, className: string): Json {
  const pipeline = PIPELINES[className] as ((model: Json, cfg: Json) => Json) | undefined;
  const model = tokenizerJson.model as Json | undefined;
  const rebuilt = pipeline && model && model.type === 'BPE' ? { ...tokenizerJson, ...pipeline(model, config) } : tokenizerJson;
  return withSpecialTokens(rebuilt, config);
}
