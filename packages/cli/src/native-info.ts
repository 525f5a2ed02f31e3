/**
 * `sparsify info --native`: which native addon is loaded and what it runs on this machine (the
 * build, threads, the CPU GEMM kernel set with its blocking, the CUDA probe of a CUDA build).
 */
import * as core from '@sparsify/core';
import { ConfigError } from '@sparsify/core';

/** A SPARSIFY_GEMM that names a kernel set this CPU cannot run is a configuration error (exit 2). */
export function checkGemmEnv(): void {
  if (!process.env.SPARSIFY_GEMM) return;
  try {
    core.gemmKernelName();
  } catch (e) {
    if (e instanceof core.ValueError && /SPARSIFY_GEMM/.test(e.message)) throw new ConfigError(e.message);
    throw e;
  }
}

export function nativeInfoText(): string {
  checkGemmEnv();
  const build = core.native().buildInfo() as { cuda: boolean; threads: number };
  const lines = [
    `addon:        ${core.nativePath()}`,
    `build:        ${build.cuda ? 'cuda' : 'cpu'}`,
    `threads:      ${core.numThreads()}`,
    `gemm kernels: ${core.gemmSummary()}`,
    `available:    ${core.gemmAvailableKernels().join(', ')} (SPARSIFY_GEMM=${process.env.SPARSIFY_GEMM || 'auto'})`,
    `bf16 gemm:    ${core.gemmBf16Path()} (--compute_dtype bf16)`,
  ];
  const probe = core.cudaProbe();
  if (probe) lines.push(`cuda:         ${probe.devices} device(s)${probe.name ? `, ${probe.name}` : ''}${probe.error ? ` (${probe.error})` : ''}`);
  return lines.join('\n') + '\n';
}
