/**
 * Size limits checked before a sparse coder is allocated, so that an absurd size is a clear
 * error instead of a RangeError from deep inside (or an out-of-memory kill).
 */
import { totalmem } from 'node:os';

import { ValueError } from './errors.js';

/** Elements of one tensor: native kernels index rows and columns with 32-bit integers. */
export const MAX_TENSOR_ELEMENTS = 2 ** 31 - 1;

export interface CoderSize {
  numLatents: number;
  dIn: number;
  skipConnection?: boolean;
}

/** Bytes of a coder's f32 parameters (encoder, decoder, biases, W_skip). */
export function coderParamBytes(s: CoderSize): number {
  return 4 * (2 * s.numLatents * s.dIn + s.numLatents + s.dIn + (s.skipConnection ? s.dIn * s.dIn : 0));
}

export const formatBytes = (n: number): string =>
  n >= 1e9 ? `${(n / 1e9).toFixed(1)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${n} bytes`;

/** A ValueError naming the sizes when a coder cannot fit (one tensor too large, or more bytes than the machine has). */
export function checkCoderSize(s: CoderSize, where: string): void {
  const { numLatents: M, dIn: D } = s;
  if (!Number.isSafeInteger(M) || M < 1) throw new ValueError(`${where}: the latent count must be a positive integer, got ${M}`);
  const elems = M * D;
  if (!Number.isSafeInteger(elems) || elems > MAX_TENSOR_ELEMENTS)
    throw new ValueError(`${where}: ${M} latents x d_in ${D} = ${elems} elements per weight matrix, more than the limit of ${MAX_TENSOR_ELEMENTS}`);
  const bytes = coderParamBytes(s);
  if (bytes > totalmem())
    throw new ValueError(`${where}: ${M} latents x d_in ${D} needs ${formatBytes(bytes)} for the weights alone, more than this machine's ${formatBytes(totalmem())} of memory`);
}

/** Runs an allocation; an out-of-memory failure becomes a ValueError saying how many bytes were asked. */
export function allocating<T>(bytes: number, what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof RangeError || /alloc|memory/i.test((e as Error)?.message ?? ''))
      throw new ValueError(`${what}: could not allocate ${formatBytes(bytes)} (${bytes} bytes): ${(e as Error).message}`);
    throw e;
  }
}
