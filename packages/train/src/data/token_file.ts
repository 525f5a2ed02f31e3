/**
 * Token rows on disk: a flat little-endian uint16/uint32 file of `rows x ctxLen` ids (the
 * reference's `.bin` memmap format when uint16), read row by row with positioned reads, and the
 * streaming writer that builds one atomically (temp file, fsync, rename).
 */
import { tempTag } from '../stale-temps.js';
import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';

import { DatasetError, ValueError } from '@sparsify/core';

export type TokenDType = 'uint16' | 'uint32';
export const TOKEN_BYTES: Record<TokenDType, number> = { uint16: 2, uint32: 4 };

/** Random access to fixed-length token rows. */
export interface TokenDataset {
  readonly length: number;
  readonly ctxLen: number;
  /** Rows `indices` (dataset order, after shuffle/max_examples) as one [n, ctxLen] row-major block. */
  rows(indices: readonly number[]): Int32Array;
  /** Releases a file handle if the dataset holds one (reads reopen it). */
  close?(): void;
}

/** An in-memory TokenDataset over `[n, ctxLen]` row-major ids. */
export function tokenDatasetFromArray(data: ArrayLike<number>, ctxLen: number): TokenDataset {
  if (!Number.isInteger(ctxLen) || ctxLen < 1 || data.length % ctxLen !== 0)
    throw new ValueError(`${data.length} ids are not a whole number of rows of ctx_len ${ctxLen}`);
  const length = data.length / ctxLen;
  return {
    length,
    ctxLen,
    rows(indices) {
      const out = new Int32Array(indices.length * ctxLen);
      indices.forEach((i, k) => {
        if (!Number.isInteger(i) || i < 0 || i >= length) throw new ValueError(`row index ${i} out of range for a dataset of ${length} rows`);
        for (let j = 0; j < ctxLen; j++) out[k * ctxLen + j] = data[i * ctxLen + j];
      });
      return out;
    },
  };
}

export interface TokenFileOptions {
  ctxLen: number;
  dtype: TokenDType;
  /** Dataset row i is file row order[i] (a shuffle); default identity. */
  order?: ArrayLike<number>;
  /** Use only the first `limit` dataset rows (max_examples). */
  limit?: number;
  /** Ids must be below this (checked on every read: a .bin file is not trusted). */
  vocabSize?: number;
}

export class TokenFileDataset implements TokenDataset {
  readonly length: number;
  readonly ctxLen: number;
  readonly fileRows: number;
  private fd: number | undefined;
  private readonly bytes: number;

  constructor(
    readonly path: string,
    private readonly opts: TokenFileOptions,
  ) {
    this.ctxLen = opts.ctxLen;
    this.bytes = TOKEN_BYTES[opts.dtype];
    let size: number;
    const fd = this.open();
    try {
      size = fstatSync(fd).size;
    } catch (e) {
      throw new DatasetError(`cannot stat ${path}: ${(e as Error).message}`);
    }
    const rowBytes = this.ctxLen * this.bytes;
    if (size % rowBytes !== 0)
      throw new DatasetError(`${path}: ${size} bytes is not a whole number of rows of ctx_len ${this.ctxLen} ${opts.dtype} tokens (${rowBytes} bytes per row)`);
    this.fileRows = size / rowBytes;
    if (opts.order && opts.order.length !== this.fileRows) throw new DatasetError(`${path}: shuffle order has ${opts.order.length} entries for ${this.fileRows} rows`);
    this.length = Math.min(this.fileRows, opts.limit ?? Infinity);
  }

  private open(): number {
    if (this.fd === undefined) {
      try {
        this.fd = openSync(this.path, 'r');
      } catch (e) {
        throw new DatasetError(`cannot open token file ${this.path}: ${(e as Error).message}`);
      }
    }
    return this.fd;
  }

  rows(indices: readonly number[]): Int32Array {
    const L = this.ctxLen;
    const out = new Int32Array(indices.length * L);
    const raw = this.bytes === 2 ? new Uint16Array(L) : new Uint32Array(L);
    const rawBytes = new Uint8Array(raw.buffer);
    const fd = this.open();
    for (let k = 0; k < indices.length; k++) {
      const i = indices[k];
      if (!Number.isInteger(i) || i < 0 || i >= this.length) throw new ValueError(`row index ${i} out of range for a dataset of ${this.length} rows`);
      const fileRow = this.opts.order ? this.opts.order[i] : i;
      const got = readSync(fd, rawBytes, 0, rawBytes.length, fileRow * rawBytes.length);
      if (got !== rawBytes.length) throw new DatasetError(`${this.path}: short read at row ${fileRow} (file changed while in use?)`);
      const vocab = this.opts.vocabSize;
      for (let j = 0; j < L; j++) {
        const id = raw[j];
        if (vocab !== undefined && id >= vocab)
          throw new DatasetError(`${this.path}: token id ${id} at row ${fileRow}, position ${j} is out of the vocabulary range [0, ${vocab})`);
        out[k * L + j] = id;
      }
    }
    return out;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Streams rows into `<path>` atomically. */
export class TokenFileWriter {
  readonly tmp: string;
  private fd: number;
  private buf: Uint8Array;
  private view: Uint16Array | Uint32Array;
  private fill = 0; // in tokens
  rows = 0;

  constructor(
    readonly path: string,
    readonly ctxLen: number,
    readonly dtype: TokenDType,
  ) {
    // The writer's pid and start time in the name let removeStaleTemps tell a killed writer's file.
    this.tmp = join(dirname(path), `.${basename(path)}.${tempTag()}.${randomBytes(6).toString('hex')}.tmp`);
    this.fd = openSync(this.tmp, 'w');
    const tokens = Math.max(ctxLen, 1 << 18);
    this.view = dtype === 'uint16' ? new Uint16Array(tokens) : new Uint32Array(tokens);
    this.buf = new Uint8Array(this.view.buffer);
  }

  push(row: ArrayLike<number>): void {
    if (row.length !== this.ctxLen) throw new DatasetError(`row ${this.rows} has ${row.length} tokens, expected ${this.ctxLen}`);
    if (this.fill + row.length > this.view.length) this.flush();
    this.view.set(row, this.fill);
    this.fill += row.length;
    this.rows++;
  }

  private flush(): void {
    const n = this.fill * TOKEN_BYTES[this.dtype];
    let off = 0;
    while (off < n) off += writeSync(this.fd, this.buf, off, n - off);
    this.fill = 0;
  }

  /** fsync + rename into place. */
  commit(): void {
    this.flush();
    fsyncSync(this.fd);
    closeSync(this.fd);
    renameSync(this.tmp, this.path);
  }

  abort(): void {
    try {
      closeSync(this.fd);
    } catch {
      /* already closed */
    }
    try {
      unlinkSync(this.tmp);
    } catch {
      /* never created */
    }
  }
}
