/**
 * `--device cuda|cpu|auto`: where the model forward and the sparse coders
 * run. auto = cuda when the loaded native addon is the CUDA build and sees a device; otherwise cpu. `--device cuda` without a usable device is
 * a DeviceError (exit 1). The CUDA paths have never run on a GPU.
 */
import * as core from '@sparsify/core';

export type DeviceFlag = 'auto' | 'cpu' | 'cuda';

/** Resolves the flag; `note` gets one line saying what auto chose. */
export function resolveDevice(flag: DeviceFlag, note: (s: string) => void): core.Device {
  if (flag === 'cpu') return 'cpu';
  if (flag === 'cuda') {
    core.requireCuda('--device cuda'); // DeviceError when the CUDA build / a device is missing
    return 'cuda';
  }
  if (!core.cudaUsable()) return 'cpu';
  note('sparsify: --device auto: using cuda (CUDA build with a device)\n');
  return 'cuda';
}
