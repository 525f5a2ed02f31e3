// Shared helpers of the io tests: fixture paths, temp folders, hand-made safetensors files.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mulberry32 } from '@sparsify/core';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'io');

/** A fresh temp folder, removed by the returned cleanup. */
export function tempDir(prefix = 'spx-io-', inMemory = false): { dir: string; cleanup: () => void } {
  // The fuzz test writes thousands of files: /dev/shm (tmpfs) where there is one, it is much faster.
  const base = inMemory && existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const dir = mkdtempSync(join(base, prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Bytes of a safetensors file from a header string (or object) and data; lenOverride lies about the header length. */
export function stBytes(header: string | object, data: Uint8Array = new Uint8Array(0), lenOverride?: bigint): Buffer {
  const h = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf-8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

export function writeSt(path: string, header: string | object, data?: Uint8Array, lenOverride?: bigint): string {
  writeFileSync(path, stBytes(header, data, lenOverride));
  return path;
}

export function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

/** A small seeded PRNG so fuzz cases are reproducible. */
export const prng = mulberry32;
