/**
 * The bf16-operand GEMM of the bf16 compute mode (native/cpu/gemm_bf16.h): both operands rounded
 * to bfloat16 (nearest even), products summed in f32.
 */
import { native } from '../native.js';
import { Tensor } from '../tensor.js';

export interface MatmulBf16Options {
  /** b is stored [N,K] (nn.Linear weight layout) and used transposed. */
  bTrans?: boolean;
  /** float32 [n1-n0], added to every row (not rounded). */
  bias?: Tensor;
  /** First column of op(b) to compute (a multiple of 16). Default 0. */
  n0?: number;
  /** End (exclusive) of the column range. Default N. */
  n1?: number;
}

function nativeOpts(opts: MatmulBf16Options): Record<string, unknown> {
  const o: Record<string, unknown> = { bTrans: opts.bTrans ?? false, bias: opts.bias?.handle };
  if (opts.n0 !== undefined) o.n0 = opts.n0;
  if (opts.n1 !== undefined) o.n1 = opts.n1;
  return o;
}

/** `bf16(a) @ bf16(op(b))[:, n0:n1] (+ bias)`, f32 accumulation, through the packed path the bf16 encoder uses. */
export async function matmulBf16(a: Tensor, b: Tensor, opts: MatmulBf16Options = {}): Promise<Tensor> {
  return new Tensor(await native().matmulBf16(a.handle, b.handle, nativeOpts(opts)));
}

/** The reference: the same bf16 rounding of both operands, products and sum in double (tests). */
export async function matmulBf16Reference(a: Tensor, b: Tensor, opts: Omit<MatmulBf16Options, 'n0' | 'n1'> = {}): Promise<Tensor> {
  return new Tensor(await native().testing.matmulBf16Reference(a.handle, b.handle, nativeOpts(opts)));
}

/**
 * The path of the bf16 GEMM now: 'avx512_bf16' (`vdpbf16ps`), or 'widen-avx512' / 'widen-avx2' /
 * 'widen-portable' (the bf16-rounded operands widened to f32 for that f32 kernel set). Follows
 * `SPARSIFY_GEMM` / gemmForceKernels (only the avx512 set uses `vdpbf16ps`).
 */
export function gemmBf16Path(): string {
  return native().gemmBf16Path();
}

/** Tests: take the widening path even where `vdpbf16ps` is available (false: back to the choice); returns the path now in use. */
export function gemmBf16ForceWiden(on: boolean): string {
  return native().testing.gemmBf16ForceWiden(on);
}
