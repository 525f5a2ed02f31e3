/**
 * safetensors reader and writer. Format: 8-byte little-endian header length N, N bytes of UTF-8
 * JSON `{"__metadata__"?: {str: str}, name: {dtype, shape, data_offsets: [begin, end]}, …}`
 * (padded with spaces), then the data; offsets are relative to the start of the data.
 *
 * Reading validates like the Rust reference implementation (safetensors 0.8) and reports every
 * problem as a FileFormatError naming the file and the tensor: header length past the end of
 * the file or over 100 MB, invalid UTF-8/JSON, a header that is not an object or does not start
 * with `{`, duplicate keys, unknown dtypes, bad shapes, byte sizes that disagree with
 * dtype × shape, and data that does not tile the data section exactly: sorted by offset the
 * tensors must be contiguous from 0 to the end of the file (no holes, no overlaps, no trailing
 * bytes: the Rust library's InvalidOffset / MetadataIncompleteBuffer). Zero-dim and empty
 * tensors are valid; data that is not aligned for its dtype (headers whose length is not a
 * multiple of 8) is valid and copied into aligned memory.
 *
 * F32/BF16/F16/I32 tensors are zero-copy views of a read-only memory map (native
 * tensorsFromFile, which bounds-checks every view against the mapping again). I64, U8, BOOL, F64
 * (and the other integer types) are converted on read to int32 / float32.
 *
 * Writing reproduces safetensors' `save_file` byte for byte: tensors sorted by dtype (the Rust
 * Dtype enum order, descending: U64, I64, F64, C64, F32, U32, I32, BF16, F16, U16, I16, F8_*, I8,
 * U8, BOOL) then by name, compact JSON with `__metadata__` first only when given, header padded
 * with spaces to 8 bytes. Files are written atomically (temp file, fsync, rename, fsync dir).
 */
import { assertRegularFile } from './regular-file.js';
import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';

import { DTypeError, FileFormatError, SparsifyError, ValueError } from './errors.js';
import { native } from './native.js';
import { JsonFloat, parseStrictJson, type JsonValue } from './strict-json.js';
import { Tensor, type DType } from './tensor.js';

export type SafetensorsDType =
  | 'BOOL' | 'U8' | 'I8' | 'F8_E5M2' | 'F8_E4M3' | 'F8_E8M0' | 'I16' | 'U16' | 'F16' | 'BF16'
  | 'I32' | 'U32' | 'F32' | 'C64' | 'F64' | 'I64' | 'U64';

/** Byte-sized dtypes of safetensors, in the order of its Rust `Dtype` enum (the writer's sort key). */
const DTYPE_ORDER: readonly SafetensorsDType[] = [
  'BOOL', 'U8', 'I8', 'F8_E5M2', 'F8_E4M3', 'F8_E8M0', 'I16', 'U16', 'F16', 'BF16', 'I32', 'U32', 'F32', 'C64', 'F64', 'I64', 'U64',
];
const DTYPE_RANK = new Map<string, number>(DTYPE_ORDER.map((d, i) => [d, i]));
// Sub-byte types of safetensors >= 0.6 that we recognise but cannot read.
const SUB_BYTE = new Set(['F4', 'F6_E2M3', 'F6_E3M2']);

export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<SafetensorsDType, number>> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, F8_E8M0: 1, I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4, C64: 8, F64: 8, I64: 8, U64: 8,
};
const NATIVE_OF: Partial<Record<SafetensorsDType, DType>> = { F32: 'float32', BF16: 'bfloat16', F16: 'float16', I32: 'int32' };
const ST_OF: Record<DType, SafetensorsDType> = { float32: 'F32', bfloat16: 'BF16', float16: 'F16', int32: 'I32' };

/** Largest header we accept (the Rust reference implementation uses the same 100 MB limit). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute byte offsets in the file. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Tensors in header order. */
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string> | undefined;
  /** Byte offset where the data section starts (8 + header length). */
  dataStart: number;
  fileSize: number;
}

/** A tensor of any safetensors dtype as raw little-endian bytes (for dtypes Tensor cannot hold). */
export interface RawTensor {
  dtype: SafetensorsDType;
  shape: number[];
  data: Uint8Array;
}

function bad(path: string, msg: string): never {
  throw new FileFormatError(`${path}: not a valid safetensors file: ${msg}`);
}

function describe(v: JsonValue | undefined): string {
  if (v instanceof Map) return 'an object';
  if (v instanceof JsonFloat) return String(v.value);
  if (typeof v === 'bigint') return v.toString();
  if (Array.isArray(v)) return `[${v.map(describe).join(', ')}]`;
  return JSON.stringify(v) ?? 'nothing';
}

function readExactly(fd: number, buf: Uint8Array, position: number, path: string): void {
  let got = 0;
  while (got < buf.length) {
    const r = readSync(fd, buf, got, buf.length - got, position + got);
    if (r <= 0) throw new FileFormatError(`${path}: short read at byte ${position + got} (file changed while reading?)`);
    got += r;
  }
}

function parseTensorEntry(path: string, name: string, v: JsonValue): { dtype: SafetensorsDType; shape: number[]; b: number; e: number } {
  if (!(v instanceof Map)) bad(path, `tensor '${name}': entry is ${describe(v)}, expected an object`);
  const dtype = v.get('dtype');
  if (typeof dtype !== 'string') bad(path, `tensor '${name}': dtype is ${describe(dtype)}, expected a string`);
  if (SUB_BYTE.has(dtype)) bad(path, `tensor '${name}': dtype ${dtype} (sub-byte) is not supported`);
  if (!DTYPE_RANK.has(dtype)) bad(path, `tensor '${name}': unknown dtype ${JSON.stringify(dtype)}`);
  const shape = v.get('shape');
  if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && d >= 0))
    bad(path, `tensor '${name}': shape ${describe(shape)} is not a list of non-negative integers below 2^53`);
  const off = v.get('data_offsets');
  if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => typeof d === 'number' && d >= 0))
    bad(path, `tensor '${name}': data_offsets ${describe(off)} is not a pair of non-negative integers below 2^53`);
  const [b, e] = off as number[];
  if (e < b) bad(path, `tensor '${name}': data_offsets [${b}, ${e}] end before they begin`);
  const bytes = (shape as number[]).reduce((a, d) => a * BigInt(d), 1n) * BigInt(SAFETENSORS_DTYPE_BYTES[dtype as SafetensorsDType]);
  if (bytes !== BigInt(e - b))
    bad(path, `tensor '${name}': ${dtype} [${(shape as number[]).join(', ')}] needs ${bytes} bytes but data_offsets [${b}, ${e}] span ${e - b}`);
  return { dtype: dtype as SafetensorsDType, shape: shape as number[], b, e };
}

/** Reads and validates the header (see the module comment for what is checked). */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  assertRegularFile(path, 'a safetensors file');
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new FileFormatError(`${path}: cannot open: ${(e as Error).message}`);
  }
  try {
    const fileSize = fstatSync(fd).size;
    if (fileSize < 8) bad(path, `file is ${fileSize} bytes, shorter than the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    readExactly(fd, lenBuf, 0, path);
    const n = lenBuf.readBigUInt64LE(0);
    if (n > BigInt(MAX_HEADER_BYTES)) bad(path, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
    const headerLen = Number(n);
    if (8 + headerLen > fileSize) bad(path, `header length ${headerLen} runs past the end of the ${fileSize}-byte file (truncated?)`);
    const hbuf = Buffer.alloc(headerLen);
    readExactly(fd, hbuf, 8, path);
    if (hbuf[0] !== 0x7b) bad(path, `header does not start with '{' (header length ${headerLen})`);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(hbuf);
    } catch {
      bad(path, 'header is not valid UTF-8');
    }
    let json: JsonValue;
    try {
      json = parseStrictJson(text);
    } catch (e) {
      bad(path, `header is not valid JSON (${(e as Error).message})`);
    }
    if (!(json instanceof Map)) bad(path, 'header is not a JSON object');
    const dataStart = 8 + headerLen;
    const tensors = new Map<string, TensorInfo>();
    let metadata: Record<string, string> | undefined;
    const ranges: { b: number; e: number; name: string }[] = [];
    for (const [name, v] of json) {
      if (name === '__metadata__') {
        if (v === null) continue; // serde reads null as "no metadata"
        if (!(v instanceof Map)) bad(path, `__metadata__ is ${describe(v)}, expected an object of strings`);
        metadata = {};
        for (const [k, mv] of v) {
          if (typeof mv !== 'string') bad(path, `__metadata__[${JSON.stringify(k)}] is ${describe(mv)}, expected a string`);
          Object.defineProperty(metadata, k, { value: mv, enumerable: true, writable: true, configurable: true });
        }
        continue;
      }
      const t = parseTensorEntry(path, name, v);
      ranges.push({ b: t.b, e: t.e, name });
      tensors.set(name, { dtype: t.dtype, shape: [...t.shape], begin: dataStart + t.b, end: dataStart + t.e });
    }
    // Sorted by offset, the tensors must tile [0, end) exactly, as the Rust library requires.
    ranges.sort((x, y) => x.b - y.b || x.e - y.e);
    let pos = 0;
    let prev = '';
    for (const r of ranges) {
      if (r.b > pos) bad(path, `tensor '${r.name}' starts at ${r.b} but the previous data ends at ${pos} (a hole of ${r.b - pos} bytes; safetensors data must be contiguous)`);
      if (r.b < pos) bad(path, `tensor '${r.name}' [${r.b}, ${r.e}) overlaps tensor '${prev}' (ending at ${pos})`);
      pos = r.e;
      prev = r.name;
    }
    const dataBytes = fileSize - dataStart;
    if (pos > dataBytes)
      bad(path, `tensor '${prev}' ends at data byte ${pos} but the data section has only ${dataBytes} bytes (truncated file)`);
    if (pos < dataBytes) bad(path, `${dataBytes - pos} bytes after the last tensor ('${prev || 'none'}') are not described by the header`);
    return { tensors, metadata, dataStart, fileSize };
  } catch (e) {
    if (e instanceof SparsifyError) throw e;
    throw new FileFormatError(`${path}: cannot read the safetensors header: ${(e as Error).message}`);
  } finally {
    closeSync(fd);
  }
}

function readRange(path: string, begin: number, end: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(end - begin);
    readExactly(fd, buf, begin, path);
    return buf;
  } finally {
    closeSync(fd);
  }
}

function convertToTensor(path: string, name: string, info: TensorInfo, raw: Uint8Array): Tensor {
  const n = info.shape.reduce((a, d) => a * d, 1);
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  switch (info.dtype) {
    case 'I64': case 'U64': case 'U32': case 'I16': case 'U16': case 'I8': case 'U8': case 'BOOL': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        let v: number | bigint;
        switch (info.dtype) {
          case 'I64': v = dv.getBigInt64(i * 8, true); break;
          case 'U64': v = dv.getBigUint64(i * 8, true); break;
          case 'U32': v = dv.getUint32(i * 4, true); break;
          case 'I16': v = dv.getInt16(i * 2, true); break;
          case 'U16': v = dv.getUint16(i * 2, true); break;
          case 'I8': v = dv.getInt8(i); break;
          default: v = dv.getUint8(i);
        }
        if (v > 2147483647 || v < -2147483648)
          throw new DTypeError(`${path}: tensor '${name}' (${info.dtype}) has value ${v} at index ${i}, outside the int32 range`);
        out[i] = Number(v);
      }
      return Tensor.from(out, info.shape);
    }
    case 'F64': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = dv.getFloat64(i * 8, true);
      return Tensor.from(out, info.shape);
    }
    default:
      throw new DTypeError(`${path}: tensor '${name}' has dtype ${info.dtype}, which sparsify cannot load (use readSafetensorsRaw)`);
  }
}

export interface LoadSafetensorsOptions {
  /** Only these tensors (others are not touched). */
  names?: readonly string[];
}

/** Loads tensors from a file. Native dtypes are zero-copy views of a read-only mapping. */
export function loadSafetensors(path: string, opts: LoadSafetensorsOptions = {}): Map<string, Tensor> {
  const header = readSafetensorsHeader(path);
  const wanted = opts.names ? [...opts.names] : [...header.tensors.keys()];
  for (const n of wanted) if (!header.tensors.has(n)) throw new FileFormatError(`${path}: has no tensor '${n}'`);
  const out = new Map<string, Tensor>();
  const mapped: { name: string; info: TensorInfo }[] = [];
  for (const name of wanted) {
    const info = header.tensors.get(name)!;
    if (NATIVE_OF[info.dtype]) mapped.push({ name, info });
    else out.set(name, convertToTensor(path, name, info, readRange(path, info.begin, info.end)));
  }
  if (mapped.length) {
    const handles = native().tensorsFromFile(
      path,
      mapped.map(({ info }) => ({ offset: info.begin, shape: info.shape, dtype: NATIVE_OF[info.dtype]! })),
    );
    mapped.forEach(({ name }, i) => out.set(name, new Tensor(handles[i])));
  }
  return new Map(wanted.map((n) => [n, out.get(n)!]));
}

/** Every tensor (or `names`) as raw bytes of its file dtype, plus the metadata. */
export function readSafetensorsRaw(
  path: string,
  opts: LoadSafetensorsOptions = {},
): { tensors: Map<string, RawTensor>; metadata: Record<string, string> | undefined } {
  const header = readSafetensorsHeader(path);
  const wanted = opts.names ? [...opts.names] : [...header.tensors.keys()];
  const tensors = new Map<string, RawTensor>();
  for (const name of wanted) {
    const info = header.tensors.get(name);
    if (!info) throw new FileFormatError(`${path}: has no tensor '${name}'`);
    tensors.set(name, { dtype: info.dtype, shape: [...info.shape], data: new Uint8Array(readRange(path, info.begin, info.end)) });
  }
  return { tensors, metadata: header.metadata };
}

function isRaw(t: unknown): t is RawTensor {
  return typeof t === 'object' && t !== null && !(t instanceof Tensor) && 'data' in t && 'dtype' in t && 'shape' in t;
}

/**
 * The exact bytes safetensors' `save_file(tensors, metadata=metadata)` writes, as a header and a
 * list of data producers (so big tensors are copied out of native memory one at a time).
 */
function serialize(
  tensors: Map<string, Tensor | RawTensor> | Record<string, Tensor | RawTensor>,
  metadata: Record<string, string> | undefined,
): { header: Buffer; data: (() => Uint8Array)[] } {
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const seen = new Set<string>();
  const items = entries.map(([name, t]) => {
    if (name === '__metadata__') throw new ValueError("saveSafetensors: a tensor cannot be named '__metadata__'");
    if (seen.has(name)) throw new ValueError(`saveSafetensors: duplicate tensor name '${name}'`);
    seen.add(name);
    if (t instanceof Tensor) {
      if (t.disposed) throw new ValueError(`saveSafetensors: tensor '${name}' is disposed`);
      return { name, dtype: ST_OF[t.dtype], shape: t.shape, bytes: t.numel * SAFETENSORS_DTYPE_BYTES[ST_OF[t.dtype]], data: () => t.toBytes() };
    }
    if (!isRaw(t)) throw new ValueError(`saveSafetensors: '${name}' is neither a Tensor nor {dtype, shape, data}`);
    if (!DTYPE_RANK.has(t.dtype)) throw new ValueError(`saveSafetensors: tensor '${name}' has unknown dtype ${JSON.stringify(t.dtype)}`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw new ValueError(`saveSafetensors: tensor '${name}' has an invalid shape ${JSON.stringify(t.shape)}`);
    const bytes = t.shape.reduce((a, d) => a * d, 1) * SAFETENSORS_DTYPE_BYTES[t.dtype];
    if (!(t.data instanceof Uint8Array) || t.data.byteLength !== bytes)
      throw new ValueError(`saveSafetensors: tensor '${name}' (${t.dtype} [${t.shape.join(', ')}]) needs ${bytes} bytes of data, got ${t.data?.byteLength}`);
    return { name, dtype: t.dtype, shape: [...t.shape], bytes, data: () => t.data };
  });
  // Rust: sort by dtype descending (enum order = alignment), then by name (byte order of UTF-8,
  // which is code point order).
  const byCodePoint = (a: string, b: string) => Buffer.compare(Buffer.from(a, 'utf-8'), Buffer.from(b, 'utf-8'));
  items.sort((x, y) => DTYPE_RANK.get(y.dtype)! - DTYPE_RANK.get(x.dtype)! || byCodePoint(x.name, y.name));
  // Built by hand: JSON.stringify of an object would move integer-like keys ("0", "10") first.
  const parts: string[] = [];
  if (metadata !== undefined) {
    const kv = Object.entries(metadata).map(([k, v]) => {
      if (typeof v !== 'string') throw new ValueError(`saveSafetensors: metadata value for '${k}' must be a string`);
      return `${JSON.stringify(k)}:${JSON.stringify(v)}`;
    });
    parts.push(`"__metadata__":{${kv.join(',')}}`);
  }
  let offset = 0;
  for (const it of items) {
    parts.push(`${JSON.stringify(it.name)}:{"dtype":"${it.dtype}","shape":[${it.shape.join(',')}],"data_offsets":[${offset},${offset + it.bytes}]}`);
    offset += it.bytes;
  }
  let json = Buffer.from(`{${parts.join(',')}}`, 'utf-8');
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return { header: Buffer.concat([len, json]), data: items.map((it) => it.data) };
}

/** The bytes of a safetensors file, exactly as Python's `safetensors.torch.save_file` would write them. */
export function serializeSafetensors(
  tensors: Map<string, Tensor | RawTensor> | Record<string, Tensor | RawTensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  const { header, data } = serialize(tensors, metadata);
  return Buffer.concat([header, ...data.map((d) => d())]);
}

/**
 * Writes `path` atomically, byte-identical to Python's `save_file(tensors, path, metadata)`
 * (metadata omitted from the header when undefined, written, even if empty, when given).
 */
export function saveSafetensors(
  path: string,
  tensors: Map<string, Tensor | RawTensor> | Record<string, Tensor | RawTensor>,
  metadata?: Record<string, string>,
): void {
  const { header, data } = serialize(tensors, metadata);
  writeFileAtomic(path, (function* () {
    yield header;
    for (const d of data) yield d();
  })());
}

/**
 * Writes chunks to a temp file beside `path`, fsyncs it, renames it over `path`, and fsyncs the
 * folder. On any failure (including a chunk producer that throws) the temp file is removed and
 * an existing `path` is left untouched.
 */
export function writeFileAtomic(path: string, chunks: Iterable<Uint8Array | string>): void {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx', 0o666);
    for (const c of chunks) {
      const buf = typeof c === 'string' ? Buffer.from(c, 'utf-8') : c;
      let done = 0;
      while (done < buf.length) done += writeSync(fd, buf, done, buf.length - done);
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* never created, or already gone */
    }
    if (e instanceof SparsifyError) throw e;
    throw new FileFormatError(`cannot write ${path}: ${(e as Error).message}`);
  }
  try {
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    /* some filesystems refuse fsync on directories */
  }
}
