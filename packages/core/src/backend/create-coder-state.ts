/** Where a coder's state is created: the one place that chooses by device. */
import type { CoderParamName } from '../coder-params.js';
import type { SparseCoderConfig } from '../config.js';
import { DeviceError } from '../errors.js';
import type { Device, Tensor } from '../tensor.js';
import type { CoderState } from './coder-state.js';
import { CpuCoderState } from './cpu-coder-state.js';
import { CudaCoderState } from './cuda-coder-state.js';
import { requireCuda } from './cuda-device.js';

/** `device` checked (a DeviceError for an unknown one, or for 'cuda' where no GPU is usable). */
export function checkDevice(device: Device | undefined, what: string): Device {
  const d = device ?? 'cpu';
  if (d !== 'cpu' && d !== 'cuda') throw new DeviceError(`${what}: unknown device '${d as string}' (expected 'cpu' or 'cuda')`);
  if (d === 'cuda') requireCuda(what);
  return d;
}

/** The resident state of a coder on `device`, made from its host f32 parameters (which it then owns). */
export async function createCoderState(device: Device, cfg: SparseCoderConfig, params: Map<CoderParamName, Tensor>): Promise<CoderState> {
  switch (device) {
    case 'cpu':
      return new CpuCoderState(params, cfg.transcode);
    case 'cuda':
      return CudaCoderState.create(cfg, params);
  }
}
