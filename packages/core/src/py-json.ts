/**
 * JSON text the way Python's json.dumps writes it (", " / ": " separators, ensure_ascii), with
 * one difference JS cannot infer by itself: which numbers are floats. A field typed `float` in
 * sparsify's dataclasses prints as repr(float) (2.0, 1e-05, 0.0003), an int as an int. Callers
 * wrap float-typed values in PyFloat; plain JS numbers print as ints when integral.
 */
import { ConfigError } from './errors.js';

export class PyFloat {
  constructor(readonly value: number) {}
}

/** repr() of a Python float: shortest round-trip digits, exponent form outside [1e-4, 1e16). */
export function pythonFloatRepr(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (!Number.isFinite(v)) return v > 0 ? 'Infinity' : '-Infinity';
  if (v === 0) return Object.is(v, -0) ? '-0.0' : '0.0';
  // JS and Python agree on the shortest round-trip digit string; only the layout differs.
  const [mant, expStr] = v.toExponential().split('e');
  const exp = Number(expStr);
  const neg = mant.startsWith('-');
  const digits = mant.replace('-', '').replace('.', '');
  const sign = neg ? '-' : '';
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    const e = Math.abs(exp).toString().padStart(2, '0');
    return `${sign}${m}e${exp < 0 ? '-' : '+'}${e}`;
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  const intPart = digits.slice(0, exp + 1).padEnd(exp + 1, '0');
  const frac = digits.slice(exp + 1);
  return `${sign}${intPart}.${frac || '0'}`;
}

function pyString(s: string): string {
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

export function pyJson(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (v instanceof PyFloat) return pythonFloatRepr(v.value);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') {
    if (Number.isInteger(v)) return String(v);
    return pythonFloatRepr(v);
  }
  if (typeof v === 'string') return pyString(v);
  if (Array.isArray(v)) return '[' + v.map(pyJson).join(', ') + ']';
  if (typeof v === 'object') {
    return '{' + Object.entries(v as Record<string, unknown>).map(([k, x]) => pyString(k) + ': ' + pyJson(x)).join(', ') + '}';
  }
  throw new ConfigError(`cannot serialise a ${typeof v} to JSON`);
}
