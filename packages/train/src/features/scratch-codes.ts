/**
 * The feature pass's scratch files: the token ids of every row, and per coder the k-sparse code of
 * every token (int32 indices and float32 values, tokens x k each; never tokens x latents). Written
 * once in dataset order, then read back by row. Coders with a variable number of non-zeros per
 * token (relu / jumprelu / batchtopk) append batches of different widths; a row is read back
 * padded (value 0 at index 0) to the widest batch, which is `k`.
 */
import { closeSync, mkdirSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export interface ScratchRow {
  tokens: Int32Array;
  /** [T * k] */
  idx: Int32Array;
  act: Float32Array;
  /** 1 where the token is ignored (not evaluated). */
  ignored: Uint8Array;
}

export class ScratchCodes {
  private readonly tokFd: number;
  private readonly fds: { idx: number; act: number }[];
  /** Code width of each coder: the widest batch appended. */
  readonly k: number[];
  /** Per coder, per appended batch: [first row, rows, width, byte offset]. */
  private readonly batches: [number, number, number, number][][];

  constructor(
    readonly dir: string,
    coders: number,
    readonly ctxLen: number,
    private readonly ignore: ReadonlySet<number>,
  ) {
    mkdirSync(dir, { recursive: true });
    this.tokFd = openSync(join(dir, 'tokens.bin'), 'w+');
    this.fds = Array.from({ length: coders }, (_, c) => ({ idx: openSync(join(dir, `codes-${c}.idx`), 'w+'), act: openSync(join(dir, `codes-${c}.act`), 'w+') }));
    this.k = new Array<number>(coders).fill(0);
    this.batches = Array.from({ length: coders }, () => []);
  }

  /** Rows of tokens appended so far. */
  private tokenRows = 0;

  appendTokens(ids: Int32Array): void {
    this.tokenRows += ids.length / this.ctxLen;
    writeSync(this.tokFd, bytes(ids));
  }

  appendCodes(coder: number, idx: Int32Array, act: Float32Array, k: number): void {
    this.k[coder] = Math.max(this.k[coder], k);
    const list = this.batches[coder], last = list[list.length - 1];
    // This batch is the rows of the last appendTokens (a width of 0 is possible: nothing fired).
    const first = last ? last[0] + last[1] : 0, rows = this.tokenRows - first;
    if (idx.length !== rows * this.ctxLen * k) throw new Error(`internal: ${idx.length} codes are not ${rows} rows of ${this.ctxLen} x ${k}`);
    list.push([first, rows, k, last ? last[3] + last[1] * this.ctxLen * last[2] * 4 : 0]);
    writeSync(this.fds[coder].idx, bytes(idx));
    writeSync(this.fds[coder].act, bytes(act));
  }

  /** A reader of one coder's rows (its buffers are reused between calls). */
  reader(coder: number): (row: number) => ScratchRow {
    const T = this.ctxLen, k = this.k[coder], list = this.batches[coder];
    const out: ScratchRow = { tokens: new Int32Array(T), idx: new Int32Array(T * k), act: new Float32Array(T * k), ignored: new Uint8Array(T) };
    const narrowIdx = new Int32Array(T * k), narrowAct = new Float32Array(T * k);
    return (row) => {
      readFully(this.tokFd, out.tokens, row * T * 4);
      let lo = 0, hi = list.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (list[mid][0] <= row) lo = mid;
        else hi = mid - 1;
      }
      const [first, , w, offset] = list[lo];
      const at = offset + (row - first) * T * w * 4;
      if (w === k) {
        readFully(this.fds[coder].idx, out.idx, at);
        readFully(this.fds[coder].act, out.act, at);
      } else {
        const ni = narrowIdx.subarray(0, T * w), na = narrowAct.subarray(0, T * w);
        readFully(this.fds[coder].idx, ni, at);
        readFully(this.fds[coder].act, na, at);
        out.idx.fill(0);
        out.act.fill(0);
        for (let p = 0; p < T; p++)
          for (let j = 0; j < w; j++) {
            out.idx[p * k + j] = ni[p * w + j];
            out.act[p * k + j] = na[p * w + j];
          }
      }
      for (let p = 0; p < T; p++) out.ignored[p] = this.ignore.has(out.tokens[p]) ? 1 : 0;
      return out;
    };
  }

  /** Closes and deletes the files. */
  remove(): void {
    closeSync(this.tokFd);
    for (const f of this.fds) {
      closeSync(f.idx);
      closeSync(f.act);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const bytes = (a: Int32Array | Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function readFully(fd: number, into: Int32Array | Float32Array, position: number): void {
  const b = bytes(into);
  let off = 0;
  while (off < b.length) {
    const n = readSync(fd, b, off, b.length - off, position + off);
    if (n === 0) throw new Error(`internal: the feature scratch file ended early at byte ${position + off}`);
    off += n;
  }
}
