/**
 * The embedded default of `sparsify train` (no model, no dataset): a tiny GPT-2-style LM and
 * its corpus, shipped in packages/train/assets/default/ (made by scripts/make-default-model.py).
 * The corpus is shipped both as text (corpus.jsonl) and as the model tokenizer's token
 * windows (tokens.safetensors: `train` and `heldout`, int32 [rows, 256]), so the default run
 * needs no tokenizer at run time.
 */
import { FileFormatError, loadSafetensors, mulberry32 } from '@sparsify/core';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { TokenDatasetLike } from './trainer.js';
import type { RunConfigInit } from './train-config.js';

export const DEFAULT_ASSETS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'assets', 'default');

/**
 * Settings of the embedded default run; each applies only where the user gave no flag.
 * Chosen for the tiny model (2 layers, width 128) so the run ends in well under 3 minutes on
 * 2 cores with held-out FVU well below 0.25 and few latents that never fire on held-out text
 * (wider or sparser coders leave more of them dead on this small corpus; see docs/train.md).
 */
export const EMBEDDED_RUN_DEFAULTS: RunConfigInit = {
  ctxLen: 256,
  batchSize: 8,
  lrWarmupSteps: 10,
  saveEvery: 1000,
  runName: 'default',
  sae: { expansionFactor: 2, k: 24 },
};
/** Passes over the training windows in the default run. */
export const EMBEDDED_EPOCHS = 3;

/** Fixed token windows in memory: optionally repeated for several epochs, each epoch shuffled. */
export class InMemoryTokenDataset implements TokenDatasetLike {
  readonly length: number;
  private readonly order: Int32Array;

  constructor(
    readonly tokens: Int32Array,
    readonly ctxLen: number,
    opts: { epochs?: number; shuffleSeed?: number | null; maxExamples?: number | null } = {},
  ) {
    if (tokens.length % ctxLen !== 0) throw new FileFormatError(`token windows: ${tokens.length} tokens is not a multiple of ctx_len ${ctxLen}`);
    const rows = tokens.length / ctxLen;
    const epochs = opts.epochs ?? 1;
    const order = new Int32Array(rows * epochs);
    for (let e = 0; e < epochs; e++) {
      const perm = Int32Array.from({ length: rows }, (_, i) => i);
      if (opts.shuffleSeed !== null && opts.shuffleSeed !== undefined) shuffle(perm, opts.shuffleSeed + e);
      order.set(perm, e * rows);
    }
    this.order = opts.maxExamples ? order.slice(0, opts.maxExamples) : order;
    this.length = this.order.length;
  }

  rows(indices: readonly number[] | Int32Array): Int32Array {
    const T = this.ctxLen;
    const out = new Int32Array(indices.length * T);
    for (let i = 0; i < indices.length; i++) {
      const j = indices[i];
      if (!(j >= 0 && j < this.length)) throw new RangeError(`row ${j} is outside [0, ${this.length})`);
      const r = this.order[j];
      out.set(this.tokens.subarray(r * T, (r + 1) * T), i * T);
    }
    return out;
  }
}

/** Fisher-Yates with a small deterministic PRNG (mulberry32). */
function shuffle(a: Int32Array, seed: number): void {
  const rand = mulberry32(seed);
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}

/** Token windows of the embedded corpus: split 'train' (90%) or 'heldout' (every 10th window). */
export function embeddedTokens(split: 'train' | 'heldout' = 'train'): { tokens: Int32Array; ctxLen: number } {
  const file = join(DEFAULT_ASSETS_DIR, 'tokens.safetensors');
  if (!existsSync(file)) throw new FileFormatError(`${file}: the embedded corpus is missing (run scripts/make-default-model.py)`);
  const t = loadSafetensors(file, { names: [split] }).get(split)!;
  const [, ctxLen] = t.shape;
  const tokens = t.toInt32Array();
  t.dispose();
  return { tokens, ctxLen };
}

export function embeddedDataset(opts: { split?: 'train' | 'heldout'; epochs?: number; shuffleSeed?: number | null; maxExamples?: number | null } = {}): InMemoryTokenDataset {
  const { tokens, ctxLen } = embeddedTokens(opts.split ?? 'train');
  return new InMemoryTokenDataset(tokens, ctxLen, { epochs: opts.epochs ?? 1, shuffleSeed: opts.shuffleSeed ?? null, maxExamples: opts.maxExamples });
}
