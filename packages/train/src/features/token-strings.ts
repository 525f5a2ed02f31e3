/**
 * Token strings for showing and exporting contexts. The page shows each id decoded on its own
 * (`tokenizer.decode([id])`); the Neuronpedia export uses the raw vocabulary entry with
 * SAEDashboard's small replacement table (byte-level space, newline, tab and a few punctuation
 * marks), as its converter does, so one string stands for one token.
 */
import type { Tokenizer } from '@sparsify/core';

/** Raw vocabulary entries by id from a parsed tokenizer.json (added tokens included). */
export function rawVocab(tokenizerJson: Record<string, unknown>, size: number): string[] {
  const out = new Array<string>(size).fill('');
  const model = tokenizerJson.model as { vocab?: unknown } | undefined;
  const vocab = model?.vocab;
  if (Array.isArray(vocab)) vocab.forEach((e, id) => id < size && Array.isArray(e) && (out[id] = String(e[0])));
  else if (vocab && typeof vocab === 'object') for (const [tok, id] of Object.entries(vocab)) if (typeof id === 'number' && id >= 0 && id < size) out[id] = tok;
  const added = tokenizerJson.added_tokens;
  if (Array.isArray(added)) for (const a of added) if (a && typeof a.id === 'number' && a.id < size && typeof a.content === 'string') out[a.id] = a.content;
  for (let i = 0; i < size; i++) if (out[i] === '') out[i] = '<|outofrange|>';
  return out;
}

// SAEDashboard's table (sae_vis_runner.py, read for the mapping only): GPT-2 byte-level
// renderings of space, newline, tab, em/en dash, curly quotes and the zero-width space.
const REPLACEMENTS: [string, string][] = [
  ['âĢĶ', '—'],
  ['âĢĵ', '–'],
  ['âĢľ', '“'],
  ['âĢĿ', '”'],
  ['âĢĺ', '‘'],
  ['âĢĻ', '’'],
  ['âĢĭ', '\u200b'],
  ['Ġ', ' '],
  ['Ċ', '\n'],
  ['ĉ', '\t'],
];

/** A raw vocabulary entry as SAEDashboard exports it (and NUL replaced: Postgres cannot store it). */
export function exportToken(raw: string): string {
  let s = raw;
  for (const [a, b] of REPLACEMENTS) s = s.split(a).join(b);
  return s.replace(/\u0000/g, ' ');
}

/** Each id decoded on its own (what the page shows), or `<id>` without a tokenizer. */
export function displayVocab(tokenizer: Tokenizer | undefined, size: number): string[] {
  const out = new Array<string>(size);
  for (let i = 0; i < size; i++) {
    let s: string | undefined;
    try {
      s = tokenizer?.decode([i]);
    } catch {
      s = undefined;
    }
    out[i] = s ?? `<${i}>`;
  }
  return out;
}
