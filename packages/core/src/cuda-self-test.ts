/**
 * The CUDA backend's start-up self-test (native/cuda/self_test.cu): on the first `device: 'cuda'`
 * use in a process, each kernel family runs on a small random problem against a host reference.
 * A mismatch disables CUDA for the process: a warning names the kernel family and the error,
 * `--device auto` falls back to cpu, `device: 'cuda'` is a DeviceError
 * (ERR_SPARSIFY_CUDA_SELFTEST). SPARSIFY_CUDA_SELFTEST=0 skips it.
 */
import { DeviceError } from './errors.js';
import type { NativeAddon } from './native.js';

interface SelfTest {
  ok: boolean;
  kernel?: string;
  error?: string;
  ms: number;
}

let result: SelfTest | undefined;
let warned = false;

/** Throws a DeviceError naming `what` when the self-test of this process's CUDA backend failed. */
export function requireSelfTest(n: NativeAddon, what: string): void {
  if (process.env.SPARSIFY_CUDA_SELFTEST === '0' || typeof n.cudaSelfTest !== 'function') return;
  result ??= n.cudaSelfTest() as SelfTest;
  if (result.ok) return;
  const why = `the CUDA start-up self-test failed in kernel family '${result.kernel}': ${result.error}`;
  if (!warned) {
    warned = true;
    process.emitWarning(`CUDA disabled for this process: ${why} (SPARSIFY_CUDA_SELFTEST=0 skips the test)`, 'SparsifyWarning');
  }
  const e = new DeviceError(`${what}: device 'cuda' is disabled: ${why}`);
  e.code = 'ERR_SPARSIFY_CUDA_SELFTEST';
  throw e;
}
