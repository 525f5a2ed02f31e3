/**
 * The device-resident working copy of a `device: 'cuda'` SparseCoder (see docs/cuda.md): the
 * CUDA build's resident training state (`cudaSae*`, native/cuda/sae_state.cu) for coders with a
 * decoder, or a resident encoder (`cudaEncoderCreate`) for encoder-only coders. The host f32
 * tensors of the SparseCoder stay the source of truth for saving; `stale` says the device copy
 * is newer (after a training step) and must be read back before the host tensors are used.
 *
 * NOTE: no GPU was available while this was written; none of the CUDA paths has run on a GPU.
 */
import type { SparseCoderConfig } from './config.js';
import { DeviceError, ShapeError } from './errors.js';
import { native, nativePath, type NativeAddon } from './native.js';
import type { Tensor } from './tensor.js';

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
  return n;
}

/** True when `device: 'cuda'` would work in this process (CUDA build loaded and a device seen). */
export function cudaUsable(): boolean {
  try {
    requireCuda('cudaUsable');
    return true;
  } catch {
    return false;
  }
}

export interface CudaCall {
  k: number;
  activation: 'topk' | 'groupmax';
}

/** The native handles of one cuda coder. */
export class CudaResident {
  /** cudaSaeCreate state (coders with a decoder). */
  sae: unknown;
  /** cudaEncoderCreate state (encoder-only coders: inference only). */
  encoder: unknown;
  /** The device parameters are newer than the host tensors. */
  stale = false;
  /** zeroGrad() was called: clear the device accumulators before the next device call. */
  pendingZero = false;

  private constructor(sae: unknown, encoder: unknown) {
    this.sae = sae;
    this.encoder = encoder;
  }

  static async create(cfg: SparseCoderConfig, t: Map<string, Tensor>): Promise<CudaResident> {
    const n = requireCuda('SparseCoder');
    const wEnc = t.get('encoder.weight')!, bEnc = t.get('encoder.bias')!, bDec = t.get('b_dec')!, wDec = t.get('W_dec');
    const wSkip = t.get('W_skip'); // skip_connection: a fifth resident parameter
    if (wDec) {
      const sae = await n.cudaSaeCreate(
        { wEnc: wEnc.handle, bEnc: bEnc.handle, wDec: wDec.handle, bDec: bDec.handle, ...(wSkip ? { wSkip: wSkip.handle } : {}) },
        { k: cfg.k, activation: cfg.activation, transcode: cfg.transcode, normalizeDecoder: cfg.normalizeDecoder },
      );
      return new CudaResident(sae, undefined);
    }
    const enc = await n.cudaEncoderCreate(wEnc.handle, bEnc.handle, cfg.transcode ? undefined : bDec.handle);
    return new CudaResident(undefined, enc);
  }

  /** Runs the deferred zeroGrad (one native call). */
  async flush(): Promise<void> {
    if (this.pendingZero && this.sae) await native().cudaSaeLoadState(this.sae, { zeroGrads: true });
    this.pendingZero = false;
  }

  dispose(): void {
    const n = native();
    if (this.sae) n.cudaSaeDispose(this.sae);
    if (this.encoder) n.cudaEncoderDispose(this.encoder);
    this.sae = undefined;
    this.encoder = undefined;
  }
}

/** Dead mask as the CUDA state takes it: int32 [M] (a Uint8Array or a host tensor of any int/float dtype is converted). */
export function deadMaskI32(dead: Tensor | Uint8Array | undefined, M: number, toTensor: (a: Int32Array) => Tensor): Tensor | undefined {
  if (dead === undefined) return undefined;
  if (dead instanceof Uint8Array) {
    if (dead.length !== M) throw new ShapeError(`deadMask has ${dead.length} entries, expected num_latents=${M}`);
    return toTensor(Int32Array.from(dead));
  }
  if (dead.dtype === 'int32') return dead;
  const f = dead.toFloat32Array();
  return toTensor(Int32Array.from(f, (v) => (v !== 0 ? 1 : 0)));
}
