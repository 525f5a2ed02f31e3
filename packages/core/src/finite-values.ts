/** Loaded parameters must be finite numbers: a NaN or ±Inf read from a file is named, not computed with. */
import { FileFormatError } from './errors.js';

export function assertFiniteValues(file: string, name: string, a: Float32Array): void {
  for (let i = 0; i < a.length; i++)
    if (!Number.isFinite(a[i])) throw new FileFormatError(`${file}: tensor '${name}' has a non-finite value (${a[i]}) at index ${i}`);
}
