/**
 * The Rust tokenizers' handling of characters outside a BPE vocabulary, on top of
 * @huggingface/tokenizers (which merges before it drops them).
 */
import type { Tokenizer as HFTokenizer } from '@huggingface/tokenizers';

/** The parts of @huggingface/tokenizers' BPE model that dropUnrepresentableBeforeMerges uses. */
interface BpeModel {
  bpe?: (word: string) => string[];
  unk_token?: string | null;
  byte_fallback?: boolean;
  tokens_to_ids: Map<string, number>;
}

/**
 * A BPE model without an unk token drops the characters its vocabulary cannot represent (nor
 * byte fallback, when on): the Rust tokenizers drop them while building the word, before the
 * merges (tokenizers/src/models/bpe/model.rs, `merge_word`), so their neighbours may merge;
 * @huggingface/tokenizers merges first, and the unknown character blocks those merges. This puts
 * the drop before the merges.
 */
export function dropUnrepresentableBeforeMerges(tok: HFTokenizer, tokenizerJson: Record<string, unknown>): void {
  const model = (tok as unknown as { model?: BpeModel }).model;
  if (!model || typeof model.bpe !== 'function' || model.unk_token != null) return;
  const ids = model.tokens_to_ids;
  if (byteLevelCovered(tokenizerJson, ids)) return; // every character a word can hold is in the vocabulary
  const bytes = new TextEncoder();
  const representable = (ch: string): boolean => {
    if (ids.has(ch)) return true;
    if (!model.byte_fallback) return false;
    for (const b of bytes.encode(ch)) if (!ids.has(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`)) return false;
    return true;
  };
  const bpe = model.bpe.bind(model);
  model.bpe = (word: string) => {
    let kept = '';
    for (const ch of word) if (representable(ch)) kept += ch;
    return kept.length === word.length ? bpe(word) : bpe(kept);
  };
}

/** GPT-2's byte-to-character map (bytes_to_unicode): the 256 characters of byte-level words. */
const BYTE_LEVEL_ALPHABET: string[] = (() => {
  const out: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    out.push(String.fromCodePoint(printable ? b : 256 + extra++));
  }
  return out;
})();

/** A ByteLevel pre-tokenizer over a vocabulary that holds all 256 byte characters. */
function byteLevelCovered(tokenizerJson: Record<string, unknown>, ids: Map<string, number>): boolean {
  const pre = tokenizerJson.pre_tokenizer as { type?: string; pretokenizers?: { type?: string }[] } | null | undefined;
  const byteLevel = pre?.type === 'ByteLevel' || (pre?.type === 'Sequence' && (pre.pretokenizers ?? []).some((p) => p?.type === 'ByteLevel'));
  return byteLevel && BYTE_LEVEL_ALPHABET.every((c) => ids.has(c));
}
