/**
 * pretokenize: a dataset tokenized and chunked exactly as `train` would do it (openTokenDataset:
 * sparsify's chunk_and_tokenize for text, rows as they are for `input_ids`), written once as an
 * HF `Dataset.save_to_disk` folder with one `input_ids` column of ctx_len-token rows, so later
 * runs skip tokenization. It is also SAELens's pretokenized layout (PretokenizeRunner's
 * save_path: `save_to_disk` + `sae_lens.json`; SAELens 6.18 `pretokenize_runner.py`), which
 * `datasets.load_from_disk` and SAELens's ActivationsStore read (the `input_ids` column).
 * Rows keep sparsify's chunking (documents joined with EOS, no forced BOS); SAELens's own packer
 * puts BOS at the start of every row, so the row contents differ, not the layout.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

import { DatasetError, folderTargetProblem, ValueError, writeFileAtomic } from '@sparsify/core';
import { Field, Int32, List, RecordBatch, RecordBatchStreamWriter, Schema, Struct, makeData, vectorFromArray } from 'apache-arrow';

import { openTokenDataset, type OpenTokenDatasetOptions } from './dataset.js';

export interface PretokenizeOptions extends OpenTokenDatasetOptions {
  /** Recorded in sae_lens.json (`tokenizer_name`). */
  tokenizerName?: string;
  /** Rows per Arrow record batch (default 1000, HF's writer batch size). */
  batchRows?: number;
}

export interface PretokenizeResult {
  rows: number;
  ctxLen: number;
  dir: string;
}

const FEATURES = { input_ids: { feature: { dtype: 'int32', _type: 'Value' }, _type: 'Sequence' } };

/** Writes `outDir` (which must not exist) through a temporary sibling renamed at the end. */
export async function pretokenize(dataset: string, outDir: string, opts: PretokenizeOptions): Promise<PretokenizeResult> {
  const out = resolve(outDir);
  if (existsSync(out)) throw new ValueError(`pretokenize: ${out} already exists (it is never replaced)`);
  const blocked = folderTargetProblem(out);
  if (blocked) throw new ValueError(`pretokenize: ${blocked}`);
  if (!Number.isSafeInteger(opts?.ctxLen) || opts.ctxLen < 1) throw new ValueError(`pretokenize: ctxLen must be a positive integer, got ${typeof opts?.ctxLen === 'number' ? opts.ctxLen : JSON.stringify(opts?.ctxLen)}`);
  const batchRows = opts.batchRows ?? 1000;
  if (!Number.isSafeInteger(batchRows) || batchRows < 1) throw new ValueError(`pretokenize: batchRows must be a positive integer, got ${batchRows}`);
  // Dataset order (no shuffle) unless a seed is asked for: train shuffles when it reads.
  const ds = await openTokenDataset(dataset, { ...opts, shuffleSeed: opts.shuffleSeed ?? null });
  if (ds.length === 0) throw new DatasetError(`pretokenize: ${dataset} gives no rows of ${opts.ctxLen} tokens`);
  const tmp = join(dirname(out), `.${basename(out)}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    const file = 'data-00000-of-00001.arrow';
    const hash = createHash('sha256');
    const listType = new List(new Field('item', new Int32(), true));
    const schema = new Schema([new Field('input_ids', listType, true)], new Map([['huggingface', JSON.stringify({ info: { features: FEATURES } })]]));
    const writer = new RecordBatchStreamWriter();
    const fd = openSync(join(tmp, file), 'w');
    try {
      // The writer's byte queue is drained by iterating it (toUint8Array would keep every byte).
      const pump = (async () => {
        for await (const chunk of writer as AsyncIterable<Uint8Array>) {
          writeSync(fd, chunk);
          hash.update(chunk);
        }
      })();
      writer.reset(undefined, schema);
      for (let r0 = 0; r0 < ds.length; r0 += batchRows) {
        const n = Math.min(batchRows, ds.length - r0);
        const block = ds.rows(Array.from({ length: n }, (_, i) => r0 + i));
        const lists = Array.from({ length: n }, (_, i) => block.subarray(i * ds.ctxLen, (i + 1) * ds.ctxLen));
        const vec = vectorFromArray(lists, listType);
        const struct = makeData({ type: new Struct(schema.fields), length: n, nullCount: 0, children: [vec.data[0]] });
        writer.write(new RecordBatch(schema, struct));
        await new Promise((r) => setImmediate(r));
      }
      writer.finish();
      writer.close();
      await pump;
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    const fingerprint = hash.digest('hex').slice(0, 16);
    writeFileAtomic(join(tmp, 'state.json'), [JSON.stringify({ _data_files: [{ filename: file }], _fingerprint: fingerprint, _format_columns: null, _format_kwargs: {}, _format_type: null, _output_all_columns: false, _split: null }, null, 2)]);
    writeFileAtomic(join(tmp, 'dataset_info.json'), [JSON.stringify({ citation: '', description: '', features: FEATURES, homepage: '', license: '' }, null, 2)]);
    writeFileAtomic(join(tmp, 'sae_lens.json'), [JSON.stringify({
      sae_lens_version: '6.18.0',
      tokenizer_name: opts.tokenizerName ?? null,
      original_dataset: dataset,
      original_dataset_name: null,
      original_split: opts.split ?? 'train',
      original_data_files: null,
      original_column_name: opts.textColumn ?? 'text',
      context_size: ds.ctxLen,
      shuffled: opts.shuffleSeed !== undefined && opts.shuffleSeed !== null,
      seed: opts.shuffleSeed ?? null,
      begin_batch_token: null,
      begin_sequence_token: null,
      sequence_separator_token: 'eos',
      disable_concat_sequences: false,
      sparsify_chunking: 'chunk_and_tokenize',
    }, null, 2)]);
    renameSync(tmp, out);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return { rows: ds.length, ctxLen: ds.ctxLen, dir: out };
}
