/** Whether `device: 'cuda'` can work in this process, with the error that says why not. */
import { DeviceError } from '../errors.js';
import { requireSelfTest } from '../cuda-self-test.js';
import { native, nativePath, type NativeAddon } from '../native.js';

/** The loaded addon when it is the CUDA build and sees a device; a DeviceError naming `what` otherwise. */
export function requireCuda(what: string): NativeAddon {
  const n = native();
  if (!n.buildInfo?.().cuda) {
    const e = new DeviceError(
      `${what}: device 'cuda' needs the CUDA build of sparsify, but the loaded native addon (${nativePath()}) is the CPU build ` +
        '(the CUDA build is only loaded when it sees a GPU; SPARSIFY_NATIVE=<path> forces a file)',
    );
    e.code = 'ERR_SPARSIFY_CUDA_UNAVAILABLE';
    throw e;
  }
  const probe = n.cudaProbe?.() as { devices: number; error?: string } | undefined;
  if (!probe || probe.devices < 1) {
    const e = new DeviceError(`${what}: device 'cuda' but no CUDA device is usable (${probe?.error ?? 'cudaProbe reports no device'})`);
    e.code = 'ERR_SPARSIFY_CUDA_UNAVAILABLE';
    throw e;
  }
  requireSelfTest(n, what);
  return n;
}

/** True when `device: 'cuda'` would work in this process (CUDA build loaded, a device seen, self-test passed). */
export function cudaUsable(): boolean {
  try {
    requireCuda('cudaUsable');
    return true;
  } catch {
    return false;
  }
}
