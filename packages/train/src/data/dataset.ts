/**
 * `openTokenDataset(spec, opts)`: the CLI's dataset path (reference 6.2) as fixed-length token
 * rows with random access.
 *
 * - `*.bin`: the reference MemmapDataset, uint16 ids reshaped to (-1, ctxLen), NOT shuffled.
 * - Everything else is read in one streaming pass (text is tokenized and chunked as
 *   `chunk_and_tokenize`; an `input_ids` column is taken as it is) into a token cache file
 *   `<cacheDir>/<key>.tokens`, keyed by a hash of (files with size+mtime, tokenizer, ctx_len,
 *   column, chunking options). Later runs reuse it. Rows are then shuffled with numpy's
 *   `default_rng(seed).permutation(n)` (HF `Dataset.shuffle(seed)`), and `maxExamples` keeps the
 *   first N after shuffling.
 */
import { removeStaleTemps } from '../stale-temps.js';
import { assertRegularFile } from '@sparsify/core';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { availableParallelism, homedir } from 'node:os';
import { join, resolve } from 'node:path';

import { DatasetError, ValueError, writeFileAtomic, type HubOptions, type Tokenizer } from '@sparsify/core';

import { TokenChunker, chunkSizeFor, type FinalChunkMode } from './chunk.js';
import { parseDataArgs, type DataArgValue } from './data_args.js';
import { numpyPermutation } from './numpy_random.js';
import { encodeInOrder } from './parallel_encode.js';
import { resolveDataFiles } from './resolve.js';
import { columnValues, columnsOf, fileIdentity } from './sources.js';
import { TOKEN_BYTES, TokenFileDataset, TokenFileWriter, type TokenDType, type TokenDataset } from './token_file.js';

export interface OpenTokenDatasetOptions {
  /** Needed for text datasets. */
  tokenizer?: Tokenizer;
  /** Row length (chunks are min(tokenizer.modelMaxLength, ctxLen) long; .bin rows are ctxLen). */
  ctxLen: number;
  /** Default "train". */
  split?: string;
  /** Default "text". */
  textColumn?: string;
  /** sparsify's data_args ("a=1,b=x") or already parsed. Used: sample_by (text), field (json), data_dir, name, data_files. */
  dataArgs?: string | Record<string, DataArgValue>;
  /** Default 42 (the CLI default); null keeps the file order. */
  shuffleSeed?: number | null;
  /** Keep the first N rows after shuffling. */
  maxExamples?: number;
  /** Token cache folder (default $SPARSIFY_CACHE or ~/.cache/sparsify/tokens). */
  cacheDir?: string;
  /** Hub dataset revision. */
  revision?: string;
  /** The model's vocabulary size: every id must be below it. */
  vocabSize?: number;
  /** The model's position limit (max_position_embeddings): rows may not be longer. */
  maxPositions?: number;
  /** See chunk.ts. Default 'sparsify'. */
  finalChunk?: FinalChunkMode;
  mapBatchSize?: number;
  /**
   * Emulate sparsify's --data_preprocessing_num_proc (map batches per contiguous shard) so the
   * rows equal a Python run with that setting. Costs one extra reading pass. Default 1.
   */
  numProc?: number;
  /**
   * Worker threads that tokenize while building the cache (default: cores - 1, at most 8, for
   * sources over 8 MB; otherwise 1 = the calling thread).
   */
  tokenizerThreads?: number;
  /** Hub access (token, endpoint, offline, HF cache dir, fetch). */
  hub?: HubOptions;
}

interface CacheMeta {
  version: 1;
  rows: number;
  ctxLen: number;
  dtype: TokenDType;
  kind: 'text' | 'input_ids';
  documents: number;
  /** Largest token id stored (checked against the vocabulary on every open). */
  maxId: number;
  source: string;
}

const PARALLEL_MIN_BYTES = 8 << 20;

export function defaultTokenizerThreads(): number {
  // One core stays with the reading/chunking thread; on 2 cores workers did not pay off.
  return Math.max(1, Math.min(availableParallelism() - 1, 8));
}

export function defaultTokenCacheDir(): string {
  if (process.env.SPARSIFY_CACHE) return join(process.env.SPARSIFY_CACHE, 'tokens');
  const base = process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache');
  return join(base, 'sparsify', 'tokens');
}

function positiveInt(v: number | undefined, name: string): void {
  if (v !== undefined && (!Number.isSafeInteger(v) || v < 1)) throw new ValueError(`${name} must be a positive integer, got ${v}`);
}

function checkPositions(len: number, maxPositions: number | undefined, what: string): void {
  if (maxPositions !== undefined && len > maxPositions)
    throw new DatasetError(`${what}: context length ${len} is longer than the model's position limit (max_position_embeddings ${maxPositions}); lower --ctx_len`);
}

export async function openTokenDataset(spec: string, opts: OpenTokenDatasetOptions): Promise<TokenDataset> {
  positiveInt(opts.ctxLen, 'ctx_len');
  positiveInt(opts.maxExamples, 'max_examples');
  positiveInt(opts.vocabSize, 'vocabSize');
  positiveInt(opts.maxPositions, 'maxPositions');
  positiveInt(opts.tokenizerThreads, 'tokenizerThreads');
  const seed = opts.shuffleSeed === undefined ? 42 : opts.shuffleSeed;
  if (seed !== null && (!Number.isSafeInteger(seed) || seed < 0)) throw new ValueError(`shuffle_seed must be a non-negative integer, got ${seed}`);

  if (spec.endsWith('.bin')) {
    if (!existsSync(spec)) throw new DatasetError(`token file ${spec} does not exist`);
    assertRegularFile(spec, 'a token file', DatasetError);
    checkPositions(opts.ctxLen, opts.maxPositions, spec);
    const ds = new TokenFileDataset(spec, { ctxLen: opts.ctxLen, dtype: 'uint16', limit: opts.maxExamples, vocabSize: opts.vocabSize ?? opts.tokenizer?.vocabSize });
    if (ds.length === 0) throw new DatasetError(`${spec} is empty`);
    return ds;
  }

  const split = opts.split ?? 'train';
  const args = typeof opts.dataArgs === 'string' ? parseDataArgs(opts.dataArgs) : (opts.dataArgs ?? {});
  const resolved = await resolveDataFiles(spec, { split, revision: opts.revision, hub: opts.hub, dataArgs: args });
  const columns = await columnsOf(resolved.files[0], resolved.format, args);
  if (columns.length === 0) throw new DatasetError(`${resolved.description} is empty (${resolved.files[0]} has no records)`);
  const textColumn = opts.textColumn ?? 'text';
  const kind: CacheMeta['kind'] = columns.includes('input_ids') ? 'input_ids' : 'text';
  if (kind === 'text') {
    if (!columns.includes(textColumn))
      throw new DatasetError(`${resolved.description}: no column '${textColumn}' (available: ${columns.join(', ') || 'none'}); choose one with --text_column`);
    if (!opts.tokenizer) throw new ValueError(`${resolved.description} holds text: a tokenizer is needed to tokenize it`);
    checkPositions(chunkSizeFor(opts.tokenizer, opts.ctxLen), opts.maxPositions, resolved.description);
  }
  const vocabLimit = opts.vocabSize ?? opts.tokenizer?.vocabSize ?? Infinity;
  // Text: the tokenizer bounds the ids. Pretokenized ids are unknown until read: uint32.
  const dtype: TokenDType = kind === 'text' && opts.tokenizer!.vocabSize <= 65536 ? 'uint16' : 'uint32';

  const identity = fileIdentity(resolved.files.map((f) => resolve(f)));
  const key = createHash('sha256')
    .update(
      JSON.stringify({
        v: 1,
        kind,
        files: identity,
        args,
        column: kind === 'text' ? textColumn : 'input_ids',
        tokenizer: kind === 'text' ? opts.tokenizer!.fingerprint : null,
        chunkSize: kind === 'text' ? chunkSizeFor(opts.tokenizer!, opts.ctxLen) : null,
        finalChunk: opts.finalChunk ?? 'sparsify',
        mapBatchSize: opts.mapBatchSize ?? 2048,
        numProc: opts.numProc ?? 1,
        dtype,
      }),
    )
    .digest('hex')
    .slice(0, 32);
  const cacheDir = opts.cacheDir ?? defaultTokenCacheDir();
  mkdirSync(cacheDir, { recursive: true });
  removeStaleTemps(cacheDir);
  const tokensPath = join(cacheDir, `${key}.tokens`);
  const metaPath = join(cacheDir, `${key}.json`);

  let meta = readMeta(metaPath, tokensPath);
  if (!meta) {
    meta = await buildCache(resolved.files, resolved.format, kind, {
      totalBytes: identity.reduce((a, [, size]) => a + size, 0),
      tokensPath,
      textColumn,
      args,
      dtype,
      vocabLimit,
      opts,
      description: resolved.description,
    });
    writeFileAtomic(metaPath, [JSON.stringify(meta, null, 1)]);
  }
  checkPositions(meta.ctxLen, opts.maxPositions, resolved.description);
  if (meta.maxId >= vocabLimit)
    throw new DatasetError(`${resolved.description}: token id ${meta.maxId} is out of the vocabulary range [0, ${vocabLimit}) (from the token cache ${tokensPath})`);
  const order = seed === null ? undefined : numpyPermutation(meta.rows, seed);
  return new TokenFileDataset(tokensPath, { ctxLen: meta.ctxLen, dtype: meta.dtype, order, limit: opts.maxExamples });
}

function readMeta(metaPath: string, tokensPath: string): CacheMeta | undefined {
  if (!existsSync(metaPath) || !existsSync(tokensPath)) return undefined;
  try {
    const m = JSON.parse(readFileSync(metaPath, 'utf-8')) as CacheMeta;
    const whole = (v: unknown, min: number) => typeof v === 'number' && Number.isSafeInteger(v) && v >= min;
    if (m === null || typeof m !== 'object' || !whole(m.rows, 1) || !whole(m.ctxLen, 1) || !whole(m.maxId, 0) || !(m.dtype in TOKEN_BYTES)) return undefined;
    if (m.version !== 1 || typeof m.maxId !== 'number' || statSync(tokensPath).size !== m.rows * m.ctxLen * TOKEN_BYTES[m.dtype]) return undefined;
    return m;
  } catch {
    return undefined; // a damaged cache entry is rebuilt
  }
}

interface BuildContext {
  totalBytes: number;
  tokensPath: string;
  textColumn: string;
  args: Record<string, DataArgValue>;
  dtype: TokenDType;
  vocabLimit: number;
  opts: OpenTokenDatasetOptions;
  description: string;
}

async function buildCache(files: string[], format: Parameters<typeof columnValues>[1], kind: CacheMeta['kind'], c: BuildContext): Promise<CacheMeta> {
  let writer: TokenFileWriter | undefined;
  let ctxLen = 0;
  let documents = 0;
  let maxId = -1;
  const checkIds = (row: ArrayLike<number>, where: string): void => {
    for (let j = 0; j < row.length; j++) {
      const id = row[j];
      if (id > maxId) maxId = id;
      if (!Number.isInteger(id) || id < 0 || id >= c.vocabLimit)
        throw new DatasetError(`${where}: token id ${id} at position ${j} is out of the vocabulary range [0, ${c.vocabLimit})`);
    }
  };
  try {
    if (kind === 'text') {
      const tok = c.opts.tokenizer!;
      ctxLen = chunkSizeFor(tok, c.opts.ctxLen);
      let numDocuments: number | undefined;
      if ((c.opts.numProc ?? 1) > 1) {
        numDocuments = 0;
        for (const f of files) for await (const _ of columnValues(f, format, c.textColumn, c.args)) numDocuments++;
      }
      const chunkOpts = { maxSeqLen: c.opts.ctxLen, finalChunk: c.opts.finalChunk, mapBatchSize: c.opts.mapBatchSize, numProc: c.opts.numProc, numDocuments };
      writer = new TokenFileWriter(c.tokensPath, ctxLen, c.dtype);
      const w = writer;
      const chunker = new TokenChunker(tok, chunkOpts, (row) => {
        checkIds(row, `${c.description} row ${w.rows}`);
        w.push(row);
      });
      const docTexts = async function* (): AsyncGenerator<string> {
        for (const f of files) {
          for await (const v of columnValues(f, format, c.textColumn, c.args)) {
            if (typeof v !== 'string') throw new DatasetError(`${f}: column '${c.textColumn}' of example ${documents} is ${v === null ? 'null' : typeof v}, expected text`);
            documents++;
            yield chunker.documentText(v);
          }
        }
      };
      // Workers cost ~100 ms to start: only worth it for more than a few MB of data.
      const threads = c.opts.tokenizerThreads ?? (c.totalBytes > PARALLEL_MIN_BYTES ? defaultTokenizerThreads() : 1);
      if (threads > 1 && tok.source) await encodeInOrder(docTexts(), tok, threads, (ids) => chunker.pushIds(ids));
      else for await (const t of docTexts()) chunker.pushIds(tok.encode(t, { addSpecialTokens: false }));
      chunker.finish();
      if (writer.rows === 0)
        throw new DatasetError(
          `Not enough data in ${c.description}: ${documents} documents gave ${chunker.tokens} tokens, too few for one row of ${ctxLen} tokens (the last chunk of every ${c.opts.mapBatchSize ?? 2048}-document batch is dropped)`,
        );
    } else {
      for (const f of files) {
        for await (const v of columnValues(f, format, 'input_ids', c.args)) {
          const row = toIdArray(v, `${f}: input_ids of example ${documents}`);
          if (!writer) {
            ctxLen = row.length;
            if (ctxLen === 0) throw new DatasetError(`${f}: input_ids of example 0 is empty`);
            checkPositions(ctxLen, c.opts.maxPositions, c.description);
            writer = new TokenFileWriter(c.tokensPath, ctxLen, c.dtype);
          }
          if (row.length !== ctxLen)
            throw new DatasetError(`${f}: input_ids of example ${documents} has ${row.length} tokens, but earlier rows have ${ctxLen}; pretokenized rows must all have the same length`);
          checkIds(row, `${f}: input_ids of example ${documents}`);
          writer.push(row);
          documents++;
        }
      }
      if (!writer) throw new DatasetError(`${c.description} is empty`);
    }
    writer.commit();
    return { version: 1, rows: writer.rows, ctxLen, dtype: c.dtype, kind, documents, maxId, source: c.description };
  } catch (e) {
    writer?.abort();
    throw e;
  }
}

function toIdArray(v: unknown, where: string): ArrayLike<number> {
  if (Array.isArray(v) || ArrayBuffer.isView(v)) {
    const a = v as ArrayLike<number | bigint>;
    const out = new Array<number>(a.length);
    for (let i = 0; i < a.length; i++) out[i] = Number(a[i]);
    return out;
  }
  throw new DatasetError(`${where} is ${v === null ? 'null' : typeof v}, expected a list of token ids`);
}
