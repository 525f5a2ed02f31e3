/**
 * The compute dtype of a coder's encoder product: 'f32' (the default) or 'bf16' (opt-in: the
 * encoder GEMM on bf16-rounded operands with f32 accumulation, AVX512_BF16 `vdpbf16ps` where the
 * CPU has it; see docs/gemm.md). Selection, decode, losses and the backward stay f32.
 */
import { ValueError } from './errors.js';

export type ComputeDType = 'f32' | 'bf16';
export const COMPUTE_DTYPES: readonly ComputeDType[] = ['f32', 'bf16'];

/** `v` as a ComputeDType, or a ValueError naming `where` (an option or flag). */
export function checkComputeDtype(v: unknown, where: string): ComputeDType {
  if (v === 'f32' || v === 'bf16') return v;
  throw new ValueError(`${where} must be 'f32' or 'bf16', got ${JSON.stringify(v)}`);
}
