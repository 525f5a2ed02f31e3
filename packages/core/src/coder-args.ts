/** Argument checks shared by SparseCoder's encode, decode, forward and forwardBackward. */
import { DisposedError, ValueError } from './errors.js';
import { Tensor } from './tensor.js';

/** `x` must be a live Tensor (a typed ValueError for null, arrays, plain objects). */
export function checkTensorArg(x: unknown, where: string): asserts x is Tensor {
  if (!(x instanceof Tensor)) throw new ValueError(`${where} must be a Tensor, got ${x === null ? 'null' : Array.isArray(x) ? 'an array' : typeof x}`);
  if (x.disposed) throw new DisposedError(`${where} has been disposed`);
}

/** totalVariance, when given, normalises the FVU: a finite number > 0. */
export function checkTotalVariance(tv: unknown, where: string): void {
  if (tv === undefined) return;
  if (typeof tv !== 'number' || !Number.isFinite(tv) || tv <= 0) throw new ValueError(`${where}: totalVariance must be a finite number > 0, got ${String(tv)}`);
}
