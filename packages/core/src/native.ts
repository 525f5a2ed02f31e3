/**
 * Finds and loads the native addon (exactly one per process).
 *
 * Order: $SPARSIFY_NATIVE (an exact .node path); dev builds in this repository
 * (native/build-cuda, then native/build-cpu, unless $SPARSIFY_DEVICE=cpu skips CUDA); the
 * platform packages @sparsify/native-<platform>-<arch>[-cuda] with node-gyp-build's
 * prebuilds/<platform>-<arch>/ naming. Failing all, a NativeLoadError lists what was tried.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Addon } from './addon-types.js';
import * as errors from './errors.js';
import { noBinaryMessage } from './platform.js';

/** The addon's typed surface (addon-types.ts). */
export type NativeAddon = Addon;

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));
/** Repository root when running from a checkout (packages/core/{src,dist} -> ../../..). */
export const repoRoot = resolve(here, '..', '..', '..');

let cached: { addon: NativeAddon; path: string } | undefined;

// @sparsify/core's own version (packages/core/{src,dist}/../package.json).
const coreVersion = (() => {
  try {
    return (require(join(here, '..', 'package.json')) as { version?: string }).version;
  } catch {
    return undefined;
  }
})();

function candidates(): string[] {
  const out: string[] = [];
  const forced = process.env.SPARSIFY_NATIVE;
  if (forced) return [resolve(forced)];
  const device = process.env.SPARSIFY_DEVICE;
  const wantCuda = device !== 'cpu';
  const plat = `${process.platform}-${process.arch}`;
  if (wantCuda) out.push(join(repoRoot, 'native', 'build-cuda', 'Release', 'sparsify.node'));
  if (device !== 'cuda') out.push(join(repoRoot, 'native', 'build-cpu', 'Release', 'sparsify.node'));
  const pkgs = [
    ...(wantCuda ? [`@sparsify/native-${plat}-cuda`] : []),
    ...(device !== 'cuda' ? [`@sparsify/native-${plat}`] : []),
  ];
  for (const pkg of pkgs) {
    let dir: string;
    try {
      dir = dirname(require.resolve(`${pkg}/package.json`));
    } catch {
      out.push(`${pkg} (not installed)`);
      continue;
    }
    // A platform package of another release may expose another native surface: refuse it.
    const version = (require(join(dir, 'package.json')) as { version?: string }).version;
    if (coreVersion && version !== coreVersion) out.push(`${pkg} ${version} (version differs from @sparsify/core ${coreVersion})`);
    else out.push(join(dir, 'prebuilds', plat, 'sparsify.napi.glibc.node'));
  }
  return out;
}

/** Loads (once) and returns the addon. */
export function native(): NativeAddon {
  if (cached) return cached.addon;
  const tried: string[] = [];
  for (const path of candidates()) {
    if (!path.endsWith('.node') || !existsSync(path)) {
      tried.push(`${path}: not found`);
      continue;
    }
    try {
      const addon = require(path) as NativeAddon;
      // An explicit SPARSIFY_NATIVE file or SPARSIFY_DEVICE=cuda is used as is.
      if (addon.buildInfo?.().cuda && process.env.SPARSIFY_DEVICE !== 'cuda' && !process.env.SPARSIFY_NATIVE) {
        // A CUDA build is only preferred when it sees a device; otherwise fall back to CPU.
        const probe = addon.cudaProbe?.();
        if (!probe || probe.devices === 0) {
          tried.push(`${path}: CUDA build, but no CUDA device (${probe?.error ?? 'no probe'})`);
          continue;
        }
      }
      addon.setErrorClasses(errors); // native code raises each of its error kinds as the class of that name
      cached = { addon, path };
      return addon;
    } catch (e) {
      tried.push(`${path}: ${(e as Error).message}`);
    }
  }
  throw new errors.NativeLoadError(noBinaryMessage(tried, repoRoot));
}

/** Path of the loaded addon (loads it if needed). */
export function nativePath(): string {
  native();
  return cached!.path;
}

/** What `cudaProbe()` of a CUDA build reports. */
export interface CudaProbe {
  devices: number;
  runtimeVersion: number;
  driverVersion?: number;
  name?: string;
  computeCapability?: string;
  multiprocessors?: number;
  totalMemory?: number;
  error?: string;
}

/** 'cuda' when the loaded addon is the CUDA build (it is only chosen when it sees a device). */
export function backend(): 'cuda' | 'cpu' {
  return native().buildInfo().cuda ? 'cuda' : 'cpu';
}

/** The CUDA probe of the loaded addon, or undefined for a CPU-only build. Never throws for "no GPU". */
export function cudaProbe(): CudaProbe | undefined {
  const addon = native();
  return addon.buildInfo().cuda ? (addon.cudaProbe!() as CudaProbe) : undefined;
}
