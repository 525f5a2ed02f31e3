/**
 * Dataset files read as streams of column values, never whole: plain text (one example per
 * line, like HF's "text" builder; `sample_by=paragraph|document` in data_args), JSON Lines /
 * JSON, Parquet (hyparquet, every codec through hyparquet-compressors), and Arrow IPC streams
 * (what HF `save_to_disk` writes as data-0000N-of-0000M.arrow, read with apache-arrow).
 */
import { jsonErrorSummary } from '@sparsify/core';
import { closeSync, createReadStream, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { createGunzip, gunzipSync } from 'node:zlib';

import { DatasetError, SparsifyError } from '@sparsify/core';

import type { DataArgValue } from './data_args.js';

export type FileFormat = 'text' | 'json' | 'parquet' | 'arrow';

const EXT_FORMAT: [RegExp, FileFormat][] = [
  [/\.(txt|text)(\.gz)?$/i, 'text'],
  [/\.(jsonl|ndjson|json)(\.gz)?$/i, 'json'],
  [/\.parquet$/i, 'parquet'],
  [/\.arrow$/i, 'arrow'],
];

export function formatOf(path: string): FileFormat | undefined {
  for (const [re, f] of EXT_FORMAT) if (re.test(path)) return f;
  return undefined;
}

/** Column names of a data file (the first record for JSON). */
export async function columnsOf(path: string, format: FileFormat, args: Record<string, DataArgValue> = {}): Promise<string[]> {
  try {
    return await columnsOfFile(path, format, args);
  } catch (e) {
    throw unreadable(e, path, format);
  }
}

/** A reader library's own failure (a corrupt file) as a DatasetError naming the file; typed errors pass. */
function unreadable(e: unknown, path: string, format: FileFormat): unknown {
  if (e instanceof SparsifyError) return e;
  const code = (e as NodeJS.ErrnoException)?.code;
  const name = { parquet: 'Parquet', arrow: 'Arrow', json: 'JSON', text: 'text' }[format];
  return new DatasetError(`${path} is not a readable ${name} file (${typeof code === 'string' ? code : 'corrupt or truncated'})`);
}

async function columnsOfFile(path: string, format: FileFormat, args: Record<string, DataArgValue>): Promise<string[]> {
  switch (format) {
    case 'text':
      return ['text'];
    case 'json': {
      for await (const rec of jsonRecords(path, args)) return Object.keys(rec);
      return [];
    }
    case 'parquet': {
      const { parquetMetadataAsync, parquetSchema, asyncBufferFromFile } = await import('hyparquet');
      const meta = await parquetMetadataAsync(await asyncBufferFromFile(path));
      return parquetSchema(meta).children.map((c) => c.element.name);
    }
    case 'arrow': {
      const reader = await openArrow(path);
      const names = reader.schema.fields.map((f) => f.name);
      await reader.cancel?.();
      return names;
    }
  }
}

/** Values of one column, in file order. */
export async function* columnValues(path: string, format: FileFormat, column: string, args: Record<string, DataArgValue> = {}): AsyncGenerator<unknown> {
  try {
    yield* columnValuesOfFile(path, format, column, args);
  } catch (e) {
    throw unreadable(e, path, format);
  }
}

async function* columnValuesOfFile(path: string, format: FileFormat, column: string, args: Record<string, DataArgValue>): AsyncGenerator<unknown> {
  switch (format) {
    case 'text':
      yield* textExamples(path, String(args.sample_by ?? 'line'), args.keep_linebreaks === true);
      return;
    case 'json': {
      let n = 0;
      for await (const rec of jsonRecords(path, args)) {
        if (!(column in rec)) throw new DatasetError(`${path}: record ${n} has no column '${column}' (it has: ${Object.keys(rec).join(', ')})`);
        n++;
        yield rec[column];
      }
      return;
    }
    case 'parquet':
      yield* parquetColumn(path, column);
      return;
    case 'arrow':
      yield* arrowColumn(path, column);
      return;
  }
}

async function* lines(path: string): AsyncGenerator<string> {
  const rl = createInterface({ input: textStream(path), crlfDelay: Infinity });
  try {
    for await (const line of rl) yield line;
  } finally {
    rl.close();
  }
}

/** The file's text in chunks with universal newlines (\r\n and \r become \n), as Python's open(). */
async function* normalizedText(path: string): AsyncGenerator<string> {
  let pendingCR = false;
  for await (const raw of textStream(path)) {
    let t = raw as string;
    if (pendingCR) t = '\r' + t;
    pendingCR = t.endsWith('\r');
    if (pendingCR) t = t.slice(0, -1);
    yield t.replace(/\r\n?/g, '\n');
  }
  if (pendingCR) yield '\n';
}

/** Pieces of the text between separators, streamed (the last piece is yielded even if empty). */
async function* splitText(path: string, sep: string): AsyncGenerator<string> {
  let carry = '';
  for await (const chunk of normalizedText(path)) {
    carry += chunk;
    let idx: number;
    while ((idx = carry.indexOf(sep)) >= 0) {
      yield carry.slice(0, idx);
      carry = carry.slice(idx + sep.length);
    }
  }
  yield carry;
}

/**
 * HF "text" builder: sample_by=line (default; `keep_linebreaks` keeps the "\n"), paragraph
 * (`text.split("\n\n")`, empty pieces dropped) or document (the whole file).
 */
async function* textExamples(path: string, sampleBy: string, keepLinebreaks: boolean): AsyncGenerator<string> {
  if (sampleBy === 'line') {
    let prev: string | undefined;
    for await (const line of splitText(path, '\n')) {
      if (prev !== undefined) yield keepLinebreaks ? prev + '\n' : prev;
      prev = line;
    }
    if (prev) yield prev; // text after the last newline (nothing when the file ends with one)
  } else if (sampleBy === 'paragraph') {
    for await (const p of splitText(path, '\n\n')) if (p) yield p;
  } else if (sampleBy === 'document') {
    let doc = '';
    for await (const chunk of normalizedText(path)) doc += chunk;
    yield doc;
  } else throw new DatasetError(`data_args sample_by must be line, paragraph or document, got '${sampleBy}'`);
}

async function* jsonRecords(path: string, args: Record<string, DataArgValue>): AsyncGenerator<Record<string, unknown>> {
  // A JSON array (or an object with `field`) must be parsed whole; JSON Lines stream.
  const head = (await readHead(path, 4096).catch((e: Error) => {
    throw new DatasetError(`cannot read ${path}: ${e.message}`);
  })).trimStart();
  if (head.startsWith('[') || (head.startsWith('{') && args.field !== undefined)) {
    let v: unknown;
    try {
      v = JSON.parse(readWhole(path));
    } catch (e) {
      throw new DatasetError(`${path} is not valid JSON (${jsonErrorSummary(e)})`);
    }
    if (args.field !== undefined) v = (v as Record<string, unknown>)[String(args.field)];
    if (!Array.isArray(v)) throw new DatasetError(`${path}: expected a JSON array of records${args.field !== undefined ? ` under field '${String(args.field)}'` : ''}`);
    for (const [i, rec] of v.entries()) yield checkRecord(rec, path, i);
    return;
  }
  let n = 0;
  for await (const line of lines(path)) {
    n++;
    if (line.trim() === '') continue;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch (e) {
      throw new DatasetError(`${path}:${n}: ${jsonErrorSummary(e)}`);
    }
    yield checkRecord(rec, path, n);
  }
}

function checkRecord(rec: unknown, path: string, where: number): Record<string, unknown> {
  if (!rec || typeof rec !== 'object' || Array.isArray(rec)) throw new DatasetError(`${path}: record ${where} is not a JSON object`);
  return rec as Record<string, unknown>;
}

const isGzip = (path: string): boolean => /\.gz$/i.test(path);

/** A UTF-8 text stream of the file, gunzipped for *.gz. */
function textStream(path: string): Readable {
  const raw = createReadStream(path);
  const s = isGzip(path) ? raw.pipe(createGunzip()) : raw;
  if (isGzip(path)) raw.on('error', (e) => s.destroy(e));
  s.setEncoding('utf-8');
  return s;
}

function readWhole(path: string): string {
  const b = readFileSync(path);
  try {
    return (isGzip(path) ? gunzipSync(b) : b).toString('utf-8');
  } catch (e) {
    throw new DatasetError(`${path}: cannot decompress: ${(e as Error).message}`);
  }
}

async function readHead(path: string, n: number): Promise<string> {
  if (isGzip(path)) {
    let out = '';
    for await (const chunk of textStream(path)) {
      out += chunk as string;
      if (out.length >= n) break;
    }
    return out;
  }
  return readHeadPlain(path, n);
}

function readHeadPlain(path: string, n: number): string {
  const fd = openForRead(path);
  try {
    const b = Buffer.alloc(n);
    return b.subarray(0, readSync(fd, b, 0, n, 0)).toString('utf-8');
  } finally {
    closeSync(fd);
  }
}

function openForRead(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (e) {
    throw new DatasetError(`cannot open ${path}: ${(e as Error).message}`);
  }
}

async function* parquetColumn(path: string, column: string): AsyncGenerator<unknown> {
  const { parquetMetadataAsync, parquetReadObjects, parquetSchema, asyncBufferFromFile } = await import('hyparquet');
  const { compressors } = await import('hyparquet-compressors');
  const file = await asyncBufferFromFile(path);
  const meta = await parquetMetadataAsync(file).catch((e: Error) => {
    throw new DatasetError(`${path} is not a readable Parquet file: ${e.message}`);
  });
  const names = parquetSchema(meta).children.map((c) => c.element.name);
  if (!names.includes(column)) throw new DatasetError(`${path} has no column '${column}' (it has: ${names.join(', ')})`);
  // One row group at a time: memory stays bounded by the largest row group.
  let rowStart = 0;
  for (const rg of meta.row_groups) {
    const rowEnd = rowStart + Number(rg.num_rows);
    const rows = await parquetReadObjects({ file, metadata: meta, columns: [column], rowStart, rowEnd, compressors }).catch((e: Error) => {
      throw new DatasetError(`${path}: cannot read column '${column}' rows ${rowStart}..${rowEnd}: ${e.message}`);
    });
    for (const r of rows) yield (r as Record<string, unknown>)[column];
    rowStart = rowEnd;
  }
}

async function openArrow(path: string) {
  const { RecordBatchReader } = await import('apache-arrow');
  try {
    const reader = await RecordBatchReader.from(createReadStream(path));
    await reader.open();
    return reader;
  } catch (e) {
    throw new DatasetError(`${path} is not a readable Arrow IPC file: ${(e as Error).message}`);
  }
}

async function* arrowColumn(path: string, column: string): AsyncGenerator<unknown> {
  const reader = await openArrow(path);
  const names = reader.schema.fields.map((f) => f.name);
  const idx = names.indexOf(column);
  if (idx < 0) {
    await reader.cancel?.();
    throw new DatasetError(`${path} has no column '${column}' (it has: ${names.join(', ')})`);
  }
  for await (const batch of reader) {
    const col = batch.getChildAt(idx);
    if (!col) continue;
    for (let i = 0; i < batch.numRows; i++) {
      const v = col.get(i) as unknown;
      // list<int> cells come back as Vectors; hand out plain arrays.
      yield v && typeof v === 'object' && 'toArray' in v && typeof (v as { toArray: unknown }).toArray === 'function' ? (v as { toArray(): unknown }).toArray() : v;
    }
  }
}

/** Size and mtime of every file: the part of a cache key that changes when data changes. */
export function fileIdentity(paths: readonly string[]): [string, number, number][] {
  return paths.map((p) => {
    if (!existsSync(p)) throw new DatasetError(`dataset file ${p} does not exist`);
    const s = statSync(p);
    return [p, s.size, Math.floor(s.mtimeMs)];
  });
}
