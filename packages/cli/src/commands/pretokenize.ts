/**
 * `sparsify pretokenize DATASET --out DIR --ctx_len T [--tokenizer MODEL] [--split S]
 *  [--text_column C] [--max_examples N] [--shuffle_seed N] [--data_args A]`: the dataset tokenized
 * and chunked as `train` does it, written as an HF save_to_disk folder (input_ids rows) that
 * `train` reads as is and that SAELens reads as a pretokenized dataset (see
 * packages/train/src/data/pretokenize.ts). Without --tokenizer, the embedded default model's.
 */
import { folderTargetProblem, loadTokenizer, resolveLocalOrHub } from '@sparsify/core';
import { DEFAULT_ASSETS_DIR, pretokenize } from '@sparsify/train';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { UsageError } from '../flags.js';
import type { Output } from '../progress.js';

export const PRETOKENIZE_USAGE =
  'usage: sparsify pretokenize DATASET --out DIR [--ctx_len 2048] [--tokenizer MODEL] [--split train] [--text_column text] [--max_examples N] [--shuffle_seed N] [--data_args A]\n';

const FLAGS = ['out', 'ctx_len', 'tokenizer', 'split', 'text_column', 'max_examples', 'shuffle_seed', 'data_args'] as const;

function positiveInt(flag: string, v: string, min = 1): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`pretokenize: --${flag} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  return n;
}

export async function pretokenizeCommand(argv: readonly string[], io: { stdout: Output }): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout.write(PRETOKENIZE_USAGE);
    return 0;
  }
  const f: Partial<Record<(typeof FLAGS)[number], string>> = {};
  const pos: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) {
      pos.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const key = (eq < 0 ? a.slice(2) : a.slice(2, eq)).replace(/-/g, '_') as (typeof FLAGS)[number];
    if (!FLAGS.includes(key)) throw new UsageError(`pretokenize: unknown flag ${a}`);
    const v = eq < 0 ? argv[++i] : a.slice(eq + 1);
    if (v === undefined || v === '') throw new UsageError(`pretokenize: --${key} needs a value`);
    f[key] = v;
  }
  if (pos.length !== 1) throw new UsageError('pretokenize: expected exactly one DATASET');
  if (!f.out) throw new UsageError('pretokenize: --out DIR is required');
  if (existsSync(f.out)) throw new UsageError(`pretokenize: ${f.out} already exists (it is never replaced)`);
  const blocked = folderTargetProblem(f.out);
  if (blocked) throw new UsageError(`pretokenize: --out ${blocked}`);
  const ctxLen = positiveInt('ctx_len', f.ctx_len ?? '2048');
  const tokDir = f.tokenizer ? await resolveLocalOrHub(f.tokenizer, {}) : DEFAULT_ASSETS_DIR;
  const tokenizer = existsSync(join(tokDir, 'tokenizer.json')) ? await loadTokenizer(tokDir) : undefined;
  const r = await pretokenize(pos[0], f.out, {
    tokenizer,
    tokenizerName: f.tokenizer ?? 'embedded default',
    ctxLen,
    split: f.split,
    textColumn: f.text_column,
    maxExamples: f.max_examples ? positiveInt('max_examples', f.max_examples) : undefined,
    shuffleSeed: f.shuffle_seed !== undefined ? positiveInt('shuffle_seed', f.shuffle_seed, 0) : undefined,
    dataArgs: f.data_args,
  });
  io.stdout.write(`${r.rows} rows of ${r.ctxLen} tokens -> ${r.dir}\n`);
  return 0;
}
