/**
 * HF tokenizers for Node: `tokenizer.json` + `tokenizer_config.json` of a model folder, run by
 * `@huggingface/tokenizers` (pure JS). Special tokens (EOS/BOS) and `model_max_length` come from
 * tokenizer_config.json the way transformers reads them.
 */
import { assertRegularFile } from './regular-file.js';
import { jsonErrorSummary } from './json-error.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { Tokenizer as HFTokenizer } from '@huggingface/tokenizers';

import { FileFormatError, ValueError } from './errors.js';
import { dropUnrepresentableBeforeMerges } from './tokenizer-bpe-unknown.js';
import { autoTokenizerClass, autoTokenizerConfig, autoTokenizerJson, tokenContent } from './tokenizer-classes.js';

/** transformers' VERY_LARGE_INTEGER: the model_max_length of a tokenizer that sets none. */
export const UNBOUNDED_MODEL_MAX_LENGTH = Number.MAX_SAFE_INTEGER;

export interface EncodeOptions {
  /** Add the post-processor's special tokens (e.g. Llama's BOS). Default true, as in transformers. */
  addSpecialTokens?: boolean;
}

export interface Tokenizer {
  encode(text: string, opts?: EncodeOptions): number[];
  decode(ids: readonly number[], opts?: { skipSpecialTokens?: boolean }): string;
  tokenToId(token: string): number | undefined;
  eosTokenId?: number;
  bosTokenId?: number;
  eosToken?: string;
  bosToken?: string;
  /** tokenizer_config.json `model_max_length` (UNBOUNDED_MODEL_MAX_LENGTH when absent or huge). */
  modelMaxLength: number;
  /** One more than the largest token id (vocabulary plus added tokens). */
  vocabSize: number;
  /**
   * Special tokens the post-processor adds around one sequence (`encode(x)` =
   * `[...prefix, ...encode(x, {addSpecialTokens:false}), ...suffix]`). Empty for GPT-2 style.
   */
  specialPrefix: readonly number[];
  specialSuffix: readonly number[];
  /** A hash of the tokenizer files (keys token caches; not cryptographic). */
  fingerprint: string;
  /** The tokenizer.json and tokenizer_config.json it runs, AutoTokenizer's class applied (worker threads and copies build the same tokenizer from them). */
  source?: { tokenizerJson: Record<string, unknown>; config: Record<string, unknown> };
}

function readJson(path: string): Record<string, unknown> {
  let text: string;
  assertRegularFile(path, 'a tokenizer file');
  try {
    text = readFileSync(path, 'utf-8');
  } catch (e) {
    throw new FileFormatError(`cannot read ${path}: ${(e as Error).message}`);
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new FileFormatError(`${path} is not valid JSON (${jsonErrorSummary(e)})`);
  }
}

/** FNV-1a 64 over a string, hex (enough to key a cache; not a security hash). */
function fnv1a(s: string): string {
  let h1 = 0x811c9dc5, h2 = 0xcbf29ce4;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193) >>> 0;
    h2 = Math.imul(h2 ^ c ^ (h1 >>> 7), 0x01000193) >>> 0;
  }
  return h1.toString(16).padStart(8, '0') + h2.toString(16).padStart(8, '0');
}

/** Finds where the plain ids sit inside the ids with special tokens: prefix and suffix. */
function specialTokensAround(withSpecial: number[], plain: number[]): [number[], number[]] {
  for (let start = 0; start + plain.length <= withSpecial.length; start++) {
    let ok = true;
    for (let i = 0; i < plain.length && ok; i++) ok = withSpecial[start + i] === plain[i];
    if (ok) return [withSpecial.slice(0, start), withSpecial.slice(start + plain.length)];
  }
  throw new ValueError('the tokenizer post-processor changes the tokens of the text itself; cannot split it into fixed-length chunks');
}

/** A tokenizer from parsed tokenizer.json and tokenizer_config.json objects. */
export function tokenizerFromJson(tokenizerJson: Record<string, unknown>, config: Record<string, unknown> = {}, source = '<memory>'): Tokenizer {
  let tok: HFTokenizer;
  try {
    tok = new HFTokenizer(tokenizerJson, config);
  } catch (e) {
    throw new FileFormatError(`${source}: cannot build the tokenizer: ${(e as Error).message}`);
  }
  dropUnrepresentableBeforeMerges(tok, tokenizerJson);
  const eosToken = tokenContent(config.eos_token);
  const bosToken = tokenContent(config.bos_token);
  const idOf = (t: string | undefined): number | undefined => (t === undefined ? undefined : tok.token_to_id(t));
  let vocabSize = 0;
  for (const id of tok.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);
  const mml = config.model_max_length;
  const modelMaxLength = typeof mml === 'number' && Number.isFinite(mml) && mml > 0 && mml < UNBOUNDED_MODEL_MAX_LENGTH ? Math.floor(mml) : UNBOUNDED_MODEL_MAX_LENGTH;
  const probe = 'a b';
  const plain = tok.encode(probe, { add_special_tokens: false }).ids;
  const [specialPrefix, specialSuffix] = specialTokensAround(tok.encode(probe, { add_special_tokens: true }).ids, plain);
  return {
    encode: (text, opts = {}) => tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids,
    decode: (ids, opts = {}) => tok.decode([...ids], { skip_special_tokens: opts.skipSpecialTokens ?? false }),
    tokenToId: (t) => tok.token_to_id(t),
    eosToken,
    bosToken,
    eosTokenId: idOf(eosToken),
    bosTokenId: idOf(bosToken),
    modelMaxLength,
    vocabSize,
    specialPrefix,
    specialSuffix,
    fingerprint: fnv1a(JSON.stringify(tokenizerJson)) + fnv1a(JSON.stringify([eosToken, bosToken, modelMaxLength])),
    source: { tokenizerJson, config },
  };
}

/**
 * Loads `<dir>/tokenizer.json` (required), `tokenizer_config.json` and `special_tokens_map.json`
 * (optional) as transformers 5's AutoTokenizer does, `config.json`'s model_type included.
 */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const tjPath = join(dir, 'tokenizer.json');
  if (!existsSync(tjPath))
    throw new FileFormatError(`${tjPath} not found: only fast tokenizers (tokenizer.json) are supported; save one with AutoTokenizer.from_pretrained(...).save_pretrained(dir)`);
  const cfgPath = join(dir, 'tokenizer_config.json');
  const config = existsSync(cfgPath) ? readJson(cfgPath) : {};
  // Older checkpoints keep the special tokens only in special_tokens_map.json (transformers reads both).
  const mapPath = join(dir, 'special_tokens_map.json');
  if (existsSync(mapPath)) {
    const map = readJson(mapPath);
    for (const k of ['eos_token', 'bos_token', 'unk_token', 'pad_token']) if (config[k] === undefined && map[k] !== undefined) config[k] = map[k];
  }
  // AutoTokenizer's class (from config.json's model_type too) decides the pipeline (tokenizer-classes.ts).
  const modelCfgPath = join(dir, 'config.json');
  const modelCfg = existsSync(modelCfgPath) ? readJson(modelCfgPath) : {};
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const className = autoTokenizerClass(config, str(modelCfg.model_type), str(modelCfg.tokenizer_class));
  const classConfig = autoTokenizerConfig(config, className);
  return tokenizerFromJson(autoTokenizerJson(readJson(tjPath), classConfig, className), classConfig, tjPath);
}
