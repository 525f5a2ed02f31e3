/**
 * `--device cuda|cpu|auto`: where the model forward and the sparse coders
 * run. auto = cuda when the loaded native addon is the CUDA build and sees a device, and the run
 * uses nothing the CUDA backend lacks; otherwise cpu. `--device cuda` without a usable device is
 * a DeviceError (exit 1). The CUDA paths have never run on a GPU.
 */
import * as core from '@sparsify/core';

export type DeviceFlag = 'auto' | 'cpu' | 'cuda';

/** What a run asks for that the CUDA backend does not implement (empty: nothing). */
export function cudaUnsupported(cfg: { optimizer?: string; sae?: { multiTopk?: boolean; skipConnection?: boolean } }): string[] {
  const out: string[] = [];
  if (cfg.optimizer === 'muon') out.push('--optimizer muon');
  return out;
}

/** Resolves the flag; `note` gets one line saying what auto chose and why. */
export function resolveDevice(flag: DeviceFlag, cfg: Parameters<typeof cudaUnsupported>[0] | undefined, note: (s: string) => void): core.Device {
  if (flag === 'cpu') return 'cpu';
  const missing = cfg ? cudaUnsupported(cfg) : [];
  if (flag === 'cuda') {
    core.requireCuda('--device cuda'); // DeviceError when the CUDA build / a device is missing
    if (missing.length) throw new core.ConfigError(`--device cuda: not implemented on the CUDA backend: ${missing.join(', ')}`);
    return 'cuda';
  }
  if (!core.cudaUsable()) return 'cpu';
  if (missing.length) {
    note(`sparsify: --device auto: a GPU is available but ${missing.join(', ')} is not implemented on the CUDA backend; using cpu\n`);
    return 'cpu';
  }
  note('sparsify: --device auto: using cuda (CUDA build with a device)\n');
  return 'cuda';
}
