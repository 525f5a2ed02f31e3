/** Dense matmul on native tensors: `a [M,K] @ b [K,N]`, or `a @ b^T` with b [N,K] when bTrans. */
import { native } from '../native.js';
import { Tensor } from '../tensor.js';

export interface MatmulOptions {
  /** b is stored [N,K] (nn.Linear weight layout) and used transposed. */
  bTrans?: boolean;
  /** float32 [N], added to every row. */
  bias?: Tensor;
  /** float32 [M,N], added to the product (the input tensor is not modified). */
  c?: Tensor;
}

function nativeOpts(opts: MatmulOptions) {
  return { bTrans: opts.bTrans ?? false, bias: opts.bias?.handle, c: opts.c?.handle };
}

/** `a @ op(b) (+ c) (+ bias)`; a is float32, b float32/bfloat16/float16; f32 accumulation, off the event loop. */
export async function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Promise<Tensor> {
  return new Tensor(await native().matmul(a.handle, b.handle, nativeOpts(opts)));
}

/** The plain reference loop (double accumulation), for tests. */
export async function matmulReference(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Promise<Tensor> {
  return new Tensor(await native().matmulReference(a.handle, b.handle, nativeOpts(opts)));
}

/**
 * Which CPU GEMM kernels are in use: 'avx512' (AVX-512F), 'avx2' (AVX2+FMA+F16C) or 'portable'. The best
 * the CPU runs unless `SPARSIFY_GEMM=avx512|avx2|portable` names one; when that names a set the CPU cannot
 * run, this (and every matmul) throws a ValueError saying so.
 */
export function gemmKernelName(): string {
  return native().gemmKernelName();
}

/** The GEMM kernel sets this CPU can run, best first (always ends with 'portable'). */
export function gemmAvailableKernels(): string[] {
  return native().gemmAvailableKernels();
}

/**
 * Pins the GEMM kernel set for the whole process ('auto': back to `SPARSIFY_GEMM` / the automatic
 * choice); returns the kernel name now in use. ValueError when the CPU cannot run it. For tests and benchmarks.
 */
export function gemmForceKernels(name: 'auto' | 'avx512' | 'avx2' | 'portable'): string {
  return native().gemmForceKernels(name);
}

/** The kernel set in use, its register tile, the cache blocking and the cache sizes (bytes) it came from. */
export interface GemmInfo {
  kernels: string;
  mr: number;
  nr: number;
  mc: number;
  kc: number;
  nc: number;
  l1d: number;
  l2: number;
  l3: number;
  /** Where the cache sizes were read: 'sysfs', 'cpuid', or 'default' (neither readable). */
  cacheSource: string;
}

export function gemmInfo(): GemmInfo {
  return native().gemmInfo();
}

const sizeText = (bytes: number) => (bytes >= 1 << 20 && bytes % (1 << 20) === 0 ? `${bytes >> 20} MiB` : `${Math.round(bytes / 1024)} KiB`);

/** One line for logs and benchmark headers, e.g. `avx512 (tile 12x32; MC 288, KC 768, NC 4096; L1d 32 KiB, L2 1 MiB, L3 32 MiB from sysfs)`. */
export function gemmSummary(): string {
  const g = gemmInfo();
  const l3 = g.l3 > 0 ? `, L3 ${sizeText(g.l3)}` : '';
  return (
    `${g.kernels} (tile ${g.mr}x${g.nr}; MC ${g.mc}, KC ${g.kc}, NC ${g.nc}; ` +
    `L1d ${sizeText(g.l1d)}, L2 ${sizeText(g.l2)}${l3} from ${g.cacheSource})`
  );
}

/** Pins the portable kernels (true) or returns to the automatic choice (false); returns the kernel name now in use. */
export function gemmForcePortable(on: boolean): string {
  return gemmForceKernels(on ? 'portable' : 'auto');
}

export interface MatmulPackedOptions extends MatmulOptions {
  /** First column of op(b) to compute (a multiple of 16). Default 0. */
  n0?: number;
  /** End (exclusive) of the column range. Default N. */
  n1?: number;
}

/**
 * Packs op(b) once (gemm_pack_b) and computes `a @ op(b)[:, n0:n1]` (+ c) (+ bias[n1-n0]) through
 * the prepacked kernel path that fused native code uses for weights reused across tiles. For tests
 * and benchmarks of that path; ordinary callers use `matmul`.
 */
export async function matmulPacked(a: Tensor, b: Tensor, opts: MatmulPackedOptions = {}): Promise<Tensor> {
  const o: Record<string, unknown> = nativeOpts(opts);
  if (opts.n0 !== undefined) o.n0 = opts.n0;
  if (opts.n1 !== undefined) o.n1 = opts.n1;
  return new Tensor(await native().matmulPacked(a.handle, b.handle, o));
}
