/**
 * The native addon's surface, every export with its argument and result types (the bindings
 * in native/bindings/{cpu,cuda}/*.cpp, named in each group below). `cuda*` functions exist only
 * in the CUDA build and accept tensors on any device (registered so in their bindings); every
 * other function reads host tensors only. Test-only kernels live in `testing`.
 */
import type { CudaProbe } from './native.js';
import type { GemmInfo } from './ops/gemm.js';
import type { DType, Device, NativeTensor } from './tensor.js';

type H = NativeTensor;
/** Sparse-coder weights as the CPU kernels name them (all f32 host tensors). */
export interface WeightHandles {
  encW: H;
  encB: H;
  W_dec?: H;
  b_dec: H;
  W_skip?: H;
}

export interface CoderSpecArg {
  k: number;
  groupmax: boolean;
  transcode: boolean;
  multiTopk: boolean;
  /** 'bf16': the encoder product on bf16 operands (default 'f32'). */
  computeDtype?: 'f32' | 'bf16';
}

/** saeReference's float64 results (testing). */
export interface SaeReferenceRaw {
  fvu: number;
  auxkLoss: number;
  multiTopkFvu: number;
  loss: number;
  saeOut: Float64Array;
  preActs: Float64Array;
  acts: Float64Array;
  indices: Int32Array;
  grads?: Record<string, Float64Array>;
}

export interface SaeStepResultRaw {
  fvu: number;
  auxkLoss: number;
  multiTopkFvu: number;
  loss: number;
  totalVariance: number;
  numDead: number;
  saeOut?: H;
  latentActs?: H;
  latentIndices?: H;
}

/** The resident state's parameter (and gradient) keys. */
export type StateParamKey = 'wEnc' | 'bEnc' | 'wDec' | 'bDec' | 'wSkip' | 'logThreshold';
export type StateGradKey = 'gradWEnc' | 'gradBEnc' | 'gradWDec' | 'gradBDec' | 'gradWSkip' | 'gradLogThreshold';
/** Moment slots by parameter, in wEnc, bEnc, wDec, bDec(, wSkip) order. */
export type StateSlots = Partial<Record<'m' | 'v' | 'z', (H | undefined)[]>>;

export interface CudaStepResult {
  fvu: number;
  auxkLoss: number;
  multiTopkFvu: number;
  kAux: number;
  numDead: number;
  totalVariance: number;
  /** Only with outputs or didFire. */
  indices?: H;
  acts?: H;
  saeOut?: H;
}

export interface ModelForwardRequest {
  outputs: string[];
  inputs: string[];
  splice: [string, H][];
  logits: boolean;
}
export interface ModelForwardResult {
  outputs: Record<string, H | undefined>;
  inputs: Record<string, H | undefined>;
  layersRun?: number;
  logits?: H;
}

/** native/bindings/cpu/model.cpp */
export interface NativeModelHandle {
  modules(): { name: string; width: number; inWidth: number; layer: number }[];
  forward(tokens: H, request: ModelForwardRequest): Promise<ModelForwardResult>;
  dispose(): void;
}

/** native/bindings/cpu/sae_state.cpp: parameters, gradients, moments, fired latents and dead-latent counters of one coder. */
export interface CpuSaeStateHandle {
  forwardBackward(x: H, opts: Opts): Promise<SaeStepResultRaw>;
  /** With maxGradNorm > 0: the global gradient norm before clipping. */
  optimizerStep(update: Opts): Promise<number | undefined>;
  lerpToZ(weight: number): Promise<void>;
  grads(): Partial<Record<StateParamKey, H>>;
  zeroGrads(): void;
  moments(): Record<'m' | 'v' | 'z', Partial<Record<StateParamKey, H>>>;
  loadMoments(moments: Partial<Record<'m' | 'v' | 'z', Partial<Record<StateParamKey, H>>>>): void;
  takeFired(): H;
  /** The live int32 [M] fired marks (the kind kernels write them; updateDeadLatents reads and clears them). */
  fired(): H;
  updateDeadLatents(tokens: number): Promise<number>;
  deadLatentCounts(): Float64Array;
  loadDeadLatents(counts: Float64Array | undefined, threshold: number): void;
  dispose(): void;
}

/** native/bindings/cuda/sae_state.cpp: the resident training state of one coder on the device. */
export interface CudaSaeStateHandle {
  readonly numLatents: number;
  readonly dIn: number;
  forwardBackward(x: H, opts: Opts): Promise<CudaStepResult>;
  /** preActs: true adds the dense [N, M] relu pre-activations. */
  encode(x: H, opts: Opts): Promise<{ acts: H; indices: H; preActs?: H }>;
  decode(acts: H, indices: H): Promise<H>;
  /** With maxGradNorm > 0: the global gradient norm before clipping. */
  apply(opts: Opts): Promise<number | undefined>;
  read(opts: { evalBeta?: number; grads?: boolean }): Promise<Partial<Record<StateParamKey | StateGradKey, H>>>;
  readState(): Promise<StateSlots>;
  loadState(opts: StateSlots & { params?: Partial<Record<StateParamKey, H>>; resetOptimizer?: boolean; zeroGrads?: boolean }): Promise<void>;
  lerp(weight: number): Promise<void>;
  takeFired(): Promise<H>;
  /** Device tensors viewing the state's parameters, gradient accumulators and int32 [M] fired marks. */
  views(): { params: Partial<Record<StateParamKey, H>>; grads: Partial<Record<StateParamKey, H>>; fired: H };
  updateDeadLatents(tokens: number): Promise<number>;
  deadLatentCounts(): Promise<Float64Array>;
  loadDeadLatents(counts: Float64Array | undefined, threshold: number): Promise<void>;
  dispose(): void;
}

/** native/bindings/cuda/sae_encode.cpp: an encoder's weights resident on the device (inference). */
export interface CudaEncoderHandle {
  readonly numLatents: number;
  readonly dIn: number;
  readonly computeDtype: 'bfloat16' | 'float16';
  readonly hasBDec: boolean;
  /** preActs: true adds the dense [N, M] relu pre-activations. */
  encode(x: H, opts: Opts): Promise<{ acts: H; indices: H; preActs?: H }>;
  dispose(): void;
}

/** native/bindings/cuda/sae_decode.cpp: a decoder's weights resident on the device (tests, benches). */
export interface CudaDecoderHandle {
  readonly numLatents: number;
  readonly dOut: number;
  readonly hasBDec: boolean;
  decode(acts: H, indices: H): Promise<H>;
  dispose(): void;
}

/** native/bindings/cuda/model.cpp: a transformer's weights resident on the device. */
export interface CudaModelHandle {
  readonly deviceBytes: number;
  forward(tokens: H, request: ModelForwardRequest): Promise<ModelForwardResult>;
  dispose(): void;
}

export interface BuildInfo {
  cuda: boolean;
  version?: string;
  [key: string]: unknown;
}


type ErrorClass = new (message: string) => Error;
type Opts = Record<string, unknown>;

export interface Addon {
  // ---- native/core/napi_util.cpp
  NativeTensor: unknown;
  setErrorClasses(classes: Partial<Record<string, ErrorClass | unknown>>): void;

  // ---- native/bindings/tensor.cpp
  tensorFromArray(data: Float32Array | Int32Array | Uint8Array, shape: number[], dtype: DType): H;
  tensorEmpty(shape: number[], dtype: DType): H;
  tensorZeros(shape: number[], dtype: DType): H;
  tensorsFromFile(path: string, entries: { offset: number; shape: number[]; dtype: DType }[]): H[];
  toDtype(t: H, dtype: DType): Promise<H>;
  cloneTensor(t: H): H;
  tensorToDevice(t: H, device: Device, sync: true): H;
  tensorToDevice(t: H, device: Device): Promise<H>;
  numThreads(): number;
  setNumThreads(n: number): number;
  buildInfo(): BuildInfo;

  // ---- native/bindings/cpu/gemm.cpp
  matmul(a: H, b: H, opts: Opts): Promise<H>;
  matmulReference(a: H, b: H, opts: Opts): Promise<H>;
  matmulPacked(a: H, b: H, opts: Opts): Promise<H>;
  gemmKernelName(): string;
  gemmAvailableKernels(): string[];
  gemmForceKernels(name: 'auto' | 'avx512' | 'avx2' | 'portable'): string;
  gemmInfo(): GemmInfo;
  // ---- native/bindings/cpu/gemm_bf16.cpp
  matmulBf16(a: H, b: H, opts: Opts): Promise<H>;
  gemmBf16Path(): string;

  // ---- native/bindings/cpu/model.cpp
  NativeModel: new (spec: unknown, weights: unknown) => NativeModelHandle;

  // ---- native/bindings/cpu/sae_state.cpp (the CPU resident state of one coder)
  CpuSaeState: new (params: Partial<Record<StateParamKey, H>>, opts: { transcode: boolean }) => CpuSaeStateHandle;

  // ---- native/bindings/cpu/sae.cpp
  zeroTensors(ts: H[]): void;
  saeEncode(w: WeightHandles, x: H, opts: CoderSpecArg & { preActs: boolean }): Promise<{ acts: H; indices: H; preActs?: H }>;
  saeDecode(W_dec: H, b_dec: H | undefined, acts: H, indices: H): Promise<H>;
  saeStep(w: WeightHandles, grads: WeightHandles | undefined, x: H, y: H | undefined, opts: CoderSpecArg & Opts): Promise<SaeStepResultRaw>;
  saeInitBiases(w: WeightHandles, x: H, y: H | undefined, transcode: boolean): Promise<void>;

  // ---- native/bindings/cpu/threshold_encode.cpp, threshold_step.cpp (JumpReLU / gated / BatchTopK kinds)
  thresholdEncode(w: Record<string, unknown>, x: H, bDec?: H): Promise<{ acts: H; indices: H; counts: H }>;
  thresholdEncodeReference(w: Record<string, unknown>, x: H, bDec?: H): Float64Array;
  thresholdStep(w: Record<string, unknown>, grads: Record<string, unknown>, x: H, opts: object): Promise<{ mse: number; sparsity: number; preAct: number; loss: number }>;
  batchTopKStep(w: Record<string, unknown>, grads: Record<string, unknown>, x: H, opts: object): Promise<{ mse: number; inner: number; aux: number; loss: number; minKept: number; kept: number }>;

  // ---- native/bindings/cpu/train.cpp
  trainGatherRows(x: H, idx: H): Promise<H>;
  trainRowSlice(x: H, begin: number, end: number): H;
  trainTotalVariance(y: H): Promise<number>;

  // ---- CUDA build only: native/bindings/cuda/device.cpp, self_test.cpp
  cudaProbe?(): CudaProbe;
  cudaSelfTest?(): { ok: boolean; kernel?: string; error?: string; ms: number };

  // ---- native/bindings/cuda/sae_state.cpp (the resident training state)
  cudaSaeCreate(params: Partial<Record<StateParamKey, H>>, opts: Opts): Promise<CudaSaeStateHandle>;

  // ---- native/bindings/cuda/sae_encode.cpp (the resident encoder of encoder-only coders)
  cudaEncoderCreate(wEnc: H, bEnc: H, bDec?: H, opts?: { computeDtype?: 'bfloat16' | 'float16' }): Promise<CudaEncoderHandle>;

  // ---- native/bindings/cuda/train.cpp, model.cpp
  cudaGatherRows(x: H, idx: H): Promise<H>;
  // ---- native/bindings/cuda/threshold_encode.cpp (twin of thresholdEncode; tensors on any device, results on x's)
  cudaThresholdEncode(w: Record<string, unknown>, x: H, bDec?: H): Promise<{ acts: H; indices: H; counts: H }>;
  // ---- native/bindings/cuda/threshold_step.cpp (twins of thresholdStep / batchTopKStep; tensors on any device)
  /** native/bindings/cuda/train.cpp: Σ (y − mean_n y)² on the device (the kinds' micro-step normaliser). */
  cudaTotalVariance(y: H): Promise<number>;
  cudaThresholdStep(w: Record<string, unknown>, grads: Record<string, unknown>, x: H, opts: object): Promise<{ mse: number; sparsity: number; preAct: number; loss: number }>;
  cudaBatchTopKStep(w: Record<string, unknown>, grads: Record<string, unknown>, x: H, opts: object): Promise<{ mse: number; inner: number; aux: number; loss: number; minKept: number; kept: number }>;
  cudaModelCreate(model: NativeModelHandle): Promise<CudaModelHandle>;

  /** Exported with Audience::Tests: kernels and references that only tests and benchmarks call. */
  testing: AddonTesting;
}

/** The addon's `testing` object. The cuda* ones exist only in the CUDA build. */
export interface AddonTesting {
  // native/core/napi_util.cpp
  errorKinds(): { jsClass: string; code: string }[];
  // native/bindings/cpu/sae.cpp, model.cpp
  saeNormalizeDecoder(W_dec: H): Promise<void>;
  saeProjectDecoderGrad(W_dec: H, grad: H): Promise<void>;
  saeReference(w: WeightHandles, frozen: WeightHandles | undefined, x: H, y: H | undefined, opts: CoderSpecArg & Opts): SaeReferenceRaw;
  optimStep(entries: Opts[]): Promise<void>;
  optimReference(kind: string, arrays: Record<string, Float64Array>, hyper: Opts): Record<string, Float64Array>;
  // native/bindings/cpu/grad_clip.cpp: clip_grad_norm_ in place (the norm before) and its float64 reference
  gradClip(grads: H[], maxNorm: number): Promise<number>;
  gradClipReference(grads: Float64Array[], maxNorm: number): { norm: number; grads: Float64Array[] };
  modelActivation(x: H, name: string): H;
  modelAttention(q: H, k: H, v: H, opts: Opts): Promise<H>;
  // native/bindings/cpu/gemm_bf16.cpp
  matmulBf16Reference(a: H, b: H, opts: Opts): Promise<H>;
  gemmBf16ForceWiden(on: boolean): string;
  // native/bindings/cuda/*.cpp: the single kernels the resident state composes
  cudaFusedTopkMaxK(): number;
  cudaGemmPath(): { wgmma: boolean; why: string };
  cudaMatmul(a: H, b: H, opts: Opts): Promise<H>;
  cudaBench(what: string, opts: Opts): Promise<number>;
  cudaTopkEncode(x: H, wEnc: H, bEnc: H, opts: Opts): Promise<Record<string, H>>;
  cudaDecode(acts: H, indices: H, wDec: H, bDec?: H): Promise<H>;
  // native/bindings/cuda/self_test_kinds.cpp: the SAELens kinds' start-up check
  cudaSelfTestKinds(): { ok: boolean; error?: string };
  cudaDecoderCreate(wDec: H, bDec?: H): Promise<CudaDecoderHandle>;
  cudaDecodeBackward(gradOut: H, acts: H, indices: H, wDec: H): Promise<{ gradWDec: H; gradActs: H; gradBDec: H }>;
  cudaEncoderBackward(gradActs: H, indices: H, xIn: H, wEnc: H): Promise<{ gradX: H; gradWEnc: H; gradBEnc: H }>;
  cudaNormalizeRows(w: H, opts?: Opts): Promise<H>;
  cudaProjectGrad(grad: H, w: H): Promise<H>;
  cudaAdamStep(param: H, grad: H, m: H, v: H, opts: Opts): Promise<Record<string, H>>;
  cudaSignumStep(param: H, grad: H, z: H, opts: Opts): Promise<Record<string, H>>;
  cudaLayerNorm(x: H, w: H | undefined, b: H | undefined, opts: Opts): Promise<H>;
  cudaRmsNorm(x: H, w: H | undefined, opts: Opts): Promise<H>;
  cudaRope(...args: unknown[]): Promise<H>;
  cudaActivation(x: H, name: string): Promise<H>;
  cudaAttention(q: H, k: H, v: H, opts?: Opts): Promise<H>;
}
