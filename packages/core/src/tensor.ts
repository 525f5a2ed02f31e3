/**
 * Tensor: a contiguous, row-major array in native memory. Data crosses into JS only when asked
 * (toFloat32Array / toInt32Array). Dispose explicitly (or with `using`); GC is only a safety net.
 */
import { DTypeError, DeviceError, DisposedError, ShapeError, ValueError } from './errors.js';
import { native } from './native.js';

export type DType = 'float32' | 'bfloat16' | 'float16' | 'int32';
export type Device = 'cpu' | 'cuda';

export const DTYPES: readonly DType[] = ['float32', 'bfloat16', 'float16', 'int32'];
export const DTYPE_BYTES: Record<DType, number> = { float32: 4, bfloat16: 2, float16: 2, int32: 4 };

/** The native handle's surface (see native/core/napi_util.h). */
export interface NativeTensor {
  readonly shape: number[];
  readonly dtype: DType;
  readonly device: Device;
  readonly nbytes: number;
  readonly disposed: boolean;
  dispose(): void;
  toFloat32Array(): Float32Array;
  toInt32Array(): Int32Array;
  readBytes(): Uint8Array;
  reshape(shape: readonly number[]): NativeTensor;
}

export interface TensorOptions {
  dtype?: DType;
  device?: Device;
}

function checkShape(shape: readonly number[], what = 'shape'): number {
  if (!Array.isArray(shape)) throw new ShapeError(`${what} must be an array of non-negative integers`);
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new ShapeError(`${what} ${JSON.stringify(shape)} has an invalid dimension ${d}`);
    n *= d;
  }
  return n;
}

function checkDevice(device: Device | undefined): void {
  if (device === undefined || device === 'cpu') return;
  if (device !== 'cuda') throw new ValueError(`device must be 'cpu' or 'cuda', got ${JSON.stringify(device)}`);
  if (!native().buildInfo().cuda)
    throw new DeviceError(`device 'cuda' is not available: this build of sparsify has no CUDA backend (CPU only)`);
}

/** Host tensor -> the requested device (synchronous copy; the host tensor is freed). */
function placed(handle: NativeTensor, device: Device | undefined): Tensor {
  if (device !== 'cuda') return new Tensor(handle);
  try {
    return new Tensor(native().tensorToDevice(handle, 'cuda', true));
  } finally {
    handle.dispose();
  }
}

function isDevice(s: string): s is Device {
  return s === 'cpu' || s === 'cuda';
}

export class Tensor implements Disposable {
  /** @internal */
  readonly handle: NativeTensor;

  /** @internal Wraps a native handle; use Tensor.from / zeros / empty instead. */
  constructor(handle: NativeTensor) {
    this.handle = handle;
  }

  /** Copies `data` into a new tensor. Float32Array -> float32 (or bfloat16/float16, converted); Int32Array -> int32. */
  static from(data: Float32Array | Int32Array, shape: readonly number[], opts: TensorOptions = {}): Tensor {
    const n = checkShape(shape);
    checkDevice(opts.device);
    let dtype = opts.dtype;
    if (data instanceof Float32Array) {
      dtype ??= 'float32';
      if (dtype === 'int32') throw new DTypeError('Tensor.from: a Float32Array cannot make an int32 tensor');
    } else if (data instanceof Int32Array) {
      dtype ??= 'int32';
      if (dtype !== 'int32') throw new DTypeError(`Tensor.from: an Int32Array makes int32 tensors, not ${dtype}`);
    } else {
      throw new DTypeError('Tensor.from: data must be a Float32Array or an Int32Array');
    }
    if (data.length !== n)
      throw new ShapeError(`Tensor.from: ${data.length} elements do not fill shape [${shape.join(', ')}] (${n})`);
    return placed(native().tensorFromArray(data, [...shape], dtype), opts.device);
  }

  /** Raw little-endian bytes of `dtype` (as in a safetensors file). */
  static fromBytes(bytes: Uint8Array, shape: readonly number[], dtype: DType): Tensor {
    checkShape(shape);
    return new Tensor(native().tensorFromArray(bytes, [...shape], dtype));
  }

  static zeros(shape: readonly number[], opts: TensorOptions = {}): Tensor {
    checkShape(shape);
    checkDevice(opts.device);
    return placed(native().tensorZeros([...shape], opts.dtype ?? 'float32'), opts.device);
  }

  /** Uninitialised contents. */
  static empty(shape: readonly number[], opts: TensorOptions = {}): Tensor {
    checkShape(shape);
    checkDevice(opts.device);
    return placed(native().tensorEmpty([...shape], opts.dtype ?? 'float32'), opts.device);
  }

  get shape(): number[] {
    if (this.handle.disposed) throw new DisposedError('tensor has been disposed (its shape is gone with its memory)');
    return this.handle.shape;
  }
  get dtype(): DType {
    if (this.handle.disposed) throw new DisposedError('tensor has been disposed');
    return this.handle.dtype;
  }
  get device(): Device {
    return this.handle.device;
  }
  get numel(): number {
    return this.handle.shape.reduce((a, b) => a * b, 1);
  }
  get disposed(): boolean {
    return this.handle.disposed;
  }

  /** Copy of the data as f32 (16-bit floats are widened; int32 is rejected). */
  toFloat32Array(): Float32Array {
    if (this.dtype === 'int32') throw new DTypeError('toFloat32Array: tensor is int32; use toInt32Array');
    return this.handle.toFloat32Array();
  }

  toInt32Array(): Int32Array {
    return this.handle.toInt32Array();
  }

  /** Raw bytes in the tensor's dtype (little-endian, C order). */
  toBytes(): Uint8Array {
    return this.handle.readBytes();
  }

  /** Same data, new shape (shares memory). */
  reshape(shape: readonly number[]): Tensor {
    checkShape(shape);
    return new Tensor(this.handle.reshape([...shape]));
  }

  /**
   * A copy on another device (`'cpu'`, `'cuda'`) or converted to another dtype, computed off the
   * event loop. Moving to the device it is already on returns a new handle on the same memory.
   * dtype conversions run on the host (convert before moving to 'cuda').
   */
  async to(target: DType | Device): Promise<Tensor> {
    if (isDevice(target)) {
      checkDevice(target);
      return new Tensor(await native().tensorToDevice(this.handle, target));
    }
    if (this.device !== 'cpu')
      throw new DeviceError(`to('${target}'): dtype conversion runs on the host; move the tensor with to('cpu') first`);
    return new Tensor(await native().toDtype(this.handle, target));
  }

  clone(): Tensor {
    return new Tensor(native().cloneTensor(this.handle));
  }

  /** Frees the native memory now (memory shared with a pending operation is freed when it ends). */
  dispose(): void {
    this.handle.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    return `Tensor(shape=[${this.shape.join(', ')}], dtype=${this.dtype}, device=${this.device})`;
  }
}

/** Sets the number of native CPU threads (<= 0: all cores). Returns the count in force. */
export function setNumThreads(n: number): number {
  return native().setNumThreads(n);
}

export function numThreads(): number {
  return native().numThreads();
}
