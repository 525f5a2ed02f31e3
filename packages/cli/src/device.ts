/**
 * `--device cuda|cpu|auto`: where the coders (and, when the model forward supports it, the model)
 * run. auto = cuda when the loaded native addon is the CUDA build and sees a device, and the run
 * uses nothing the CUDA backend lacks; otherwise cpu. `--device cuda` without a usable device is
 * a DeviceError (exit 1). The CUDA paths have never run on a GPU.
 */
import * as core from '@sparsify/core';

export type DeviceFlag = 'auto' | 'cpu' | 'cuda';

/** What a run asks for that the CUDA backend does not implement (empty: nothing). */
export function cudaUnsupported(cfg: { optimizer?: string; excludeTokens?: number[]; sae?: { multiTopk?: boolean; skipConnection?: boolean } }): string[] {
  const out: string[] = [];
  if (cfg.optimizer === 'muon') out.push('--optimizer muon');
  if (cfg.sae?.multiTopk) out.push('--multi_topk');
  if (cfg.sae?.skipConnection) out.push('--skip_connection');
  if (cfg.excludeTokens?.length) out.push('--exclude_tokens');
  return out;
}

/** Resolves the flag; `note` gets one line saying what auto chose and why. */
export function resolveDevice(flag: DeviceFlag, cfg: Parameters<typeof cudaUnsupported>[0] | undefined, note: (s: string) => void): core.Device {
  if (flag === 'cpu') return 'cpu';
  const missing = cfg ? cudaUnsupported(cfg) : [];
  if (flag === 'cuda') {
    core.requireCuda('--device cuda'); // DeviceError when the CUDA build / a device is missing
    // exclude_tokens works while the model runs on cpu; the trainer says so if activations are on the GPU.
    const hard = missing.filter((m) => m !== '--exclude_tokens');
    if (hard.length) throw new core.ConfigError(`--device cuda: not implemented on the CUDA backend: ${hard.join(', ')}`);
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

/**
 * Loads the model on `device` when the model forward supports it; a model forward that rejects
 * cuda ("not supported by the model forward") loads on cpu instead, with a note (the coders stay
 * on cuda). Any other error propagates.
 */
export async function loadModelOn<T>(
  load: (device: core.Device) => Promise<T>,
  device: core.Device,
  note: (s: string) => void,
): Promise<{ model: T; device: core.Device }> {
  if (device === 'cpu') return { model: await load('cpu'), device: 'cpu' };
  try {
    return { model: await load('cuda'), device: 'cuda' };
  } catch (e) {
    if (!(e instanceof core.DeviceError) || !/not supported by the model forward/.test(e.message)) throw e;
    note('sparsify: the model forward has no CUDA path in this build; running the model on cpu, the sparse coders on cuda\n');
    return { model: await load('cpu'), device: 'cpu' };
  }
}
