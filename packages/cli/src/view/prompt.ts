/**
 * The prompt view's computation: tokenize a text, run the model once, encode with every coder,
 * and list each token's strongest latents per coder.
 */
import { Tensor, type LanguageModel, type SparseCoder, type Tokenizer } from '@sparsify/core';

export interface PromptEngine {
  model: LanguageModel;
  tokenizer: Tokenizer;
  coders: { name: string; hookpoint: string; coder: SparseCoder }[];
  maxTokens: number;
  dispose(): void;
}

export interface PromptResult {
  tokens: number[];
  strings: string[];
  truncated: boolean;
  /** Coder name -> per token, its top latents (act > 0), highest first. */
  latents: Record<string, { index: number; act: number }[][]>;
}

export async function runPrompt(e: PromptEngine, text: string, top: number): Promise<PromptResult> {
  let ids = e.tokenizer.encode(text);
  const truncated = ids.length > e.maxTokens;
  if (truncated) ids = ids.slice(0, e.maxTokens);
  const T = ids.length;
  const result: PromptResult = { tokens: ids, strings: ids.map((id) => e.tokenizer.decode([id])), truncated, latents: {} };
  if (T === 0) return result;
  const hookpoints = [...new Set(e.coders.map((c) => c.hookpoint))];
  const input = Tensor.from(Int32Array.from(ids), [1, T]);
  const out = await e.model.forward(input, { hookpoints, captureInputs: e.coders.some((c) => c.coder.cfg.transcode) });
  input.dispose();
  try {
    for (const c of e.coders) {
      const x = c.coder.cfg.transcode ? out.capturedInputs!.get(c.hookpoint)! : out.captured.get(c.hookpoint)!;
      const enc = await c.coder.encode(x);
      const idx = enc.topIndices.toInt32Array();
      const act = enc.topActs.toFloat32Array();
      const k = enc.topIndices.shape[1];
      enc.topActs.dispose();
      enc.topIndices.dispose();
      const perToken: { index: number; act: number }[][] = [];
      for (let t = 0; t < T; t++) {
        const list = [];
        for (let j = 0; j < k; j++) if (act[t * k + j] > 0) list.push({ index: idx[t * k + j], act: +act[t * k + j].toPrecision(6) });
        list.sort((a, b) => b.act - a.act || a.index - b.index);
        perToken.push(list.slice(0, Math.max(1, Math.min(64, Math.floor(top)))));
      }
      result.latents[c.name] = perToken;
    }
  } finally {
    for (const t of out.captured.values()) t.dispose();
    for (const t of out.capturedInputs?.values() ?? []) t.dispose();
  }
  return result;
}
