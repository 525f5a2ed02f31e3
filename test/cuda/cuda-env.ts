/**
 * Where the CUDA variant of the addon is, and whether a GPU can run it. CUDA tests skip (never
 * fake) with one of these reasons when there is no build or no device.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import { native, nativePath, type CudaProbe } from '@sparsify/core';

export type NativeAddon = ReturnType<typeof native>;

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

// $SPARSIFY_NATIVE (the core loader's override) names the build under test when set: the CUDA
// tests then run against, e.g., the emulated device (native/build-cuda-emu).
export const cudaBuildPath = process.env.SPARSIFY_NATIVE
  ? resolve(process.env.SPARSIFY_NATIVE)
  : join(repoRoot, 'native', 'build-cuda', 'Release', 'sparsify.node');
export const cpuBuildPath = join(repoRoot, 'native', 'build-cpu', 'Release', 'sparsify.node');

export type { CudaProbe } from '@sparsify/core';

/** Probes the CUDA build in this process (it loads fine without a GPU). */
export function probeCudaBuild(): CudaProbe | undefined {
  if (!existsSync(cudaBuildPath)) return undefined;
  const req = createRequire(import.meta.url);
  return (req(cudaBuildPath) as NativeAddon).cudaProbe() as CudaProbe;
}

/**
 * The loaded addon when it is the CUDA build and sees a device; otherwise the reason to skip.
 * The core loader prefers native/build-cuda exactly when it reports a device.
 */
export function cudaAddon(): { addon?: NativeAddon; skip?: string } {
  if (!existsSync(cudaBuildPath))
    return { skip: `no CUDA build at ${cudaBuildPath} (build it: node scripts/build-native.mjs --cuda; needs nvcc)` };
  const probe = probeCudaBuild()!;
  if (probe.devices === 0) return { skip: `no CUDA device: ${probe.error ?? 'cudaGetDeviceCount() = 0'}` };
  const addon = native();
  if (!addon.buildInfo().cuda) return { skip: `the loaded addon (${nativePath()}) is not the CUDA build` };
  return { addon };
}
