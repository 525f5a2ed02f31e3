/**
 * The feature pass's scratch files: the token ids of every row, and per coder the k-sparse code of
 * every token (int32 indices and float32 values, tokens x k each; never tokens x latents). Written
 * once in dataset order, then read back by row.
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
  /** Code width of each coder (set by the first append). */
  readonly k: number[];

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
  }

  appendTokens(ids: Int32Array): void {
    writeSync(this.tokFd, bytes(ids));
  }

  appendCodes(coder: number, idx: Int32Array, act: Float32Array, k: number): void {
    this.k[coder] = k;
    writeSync(this.fds[coder].idx, bytes(idx));
    writeSync(this.fds[coder].act, bytes(act));
  }

  /** A reader of one coder's rows (its buffers are reused between calls). */
  reader(coder: number): (row: number) => ScratchRow {
    const T = this.ctxLen, k = this.k[coder];
    const out: ScratchRow = { tokens: new Int32Array(T), idx: new Int32Array(T * k), act: new Float32Array(T * k), ignored: new Uint8Array(T) };
    return (row) => {
      readFully(this.tokFd, out.tokens, row * T * 4);
      readFully(this.fds[coder].idx, out.idx, row * T * k * 4);
      readFully(this.fds[coder].act, out.act, row * T * k * 4);
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
