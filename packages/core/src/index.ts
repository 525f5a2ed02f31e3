export * from './errors.js';
export { Tensor, setNumThreads, numThreads, DTYPES, DTYPE_BYTES } from './tensor.js';
export type { DType, Device, TensorOptions } from './tensor.js';
export { native, nativePath } from './native.js';
export * from './safetensors.js';
export { matmul, matmulReference } from './ops/gemm.js';
export * from './config.js';
export * from './py-json.js';
export * from './hub.js';
export * from './natsort.js';
export * from './checkpoint.js';
export * from './tokenizer.js';
export {
  gemmKernelName,
  gemmForcePortable,
  gemmForceKernels,
  gemmAvailableKernels,
  gemmInfo,
  gemmSummary,
  matmulPacked,
} from './ops/gemm.js';
export type { GemmInfo, MatmulOptions, MatmulPackedOptions } from './ops/gemm.js';
export { matmulBf16, gemmBf16Path } from './ops/gemm-bf16.js';
export type { MatmulBf16Options } from './ops/gemm-bf16.js';
export { COMPUTE_DTYPES, checkComputeDtype, type ComputeDType } from './compute-dtype.js';
export * from './sparse-coder.js';
export { cudaUsable, requireCuda } from './backend/cuda-device.js';
export * from './optim/index.js';
export * as saeOps from './ops/sae.js';
export { testing } from './testing.js';
export { initEncoderWeight } from './init.js';
export { Rng, mulberry32 } from './random.js';
export { loadModel, LanguageModel, MODEL_FILE_PATTERNS } from './model/model.js';
export type { LoadModelOptions, HookpointInfo, ForwardOptions, ForwardOutput } from './model/model.js';
export { resolveHookpoints } from './model/hookpoints.js';
export type { HookpointSelection, HookpointSource } from './model/hookpoints.js';
export { parseModelConfig, SUPPORTED_ARCHITECTURES } from './model/config.js';
export type { ModelFamily, ParsedModelConfig } from './model/config.js';
export { backend, cudaProbe } from './native.js';
export type { CudaProbe } from './native.js';
export { checkCoderSize, coderParamBytes, formatBytes, MAX_TENSOR_ELEMENTS } from './size-limits.js';
export { jsonErrorSummary } from './json-error.js';
export { assertRegularFile } from './regular-file.js';
export { folderTargetProblem } from './folder-target.js';
export { readUnembedding } from './model/unembedding.js';
export type { Unembedding } from './model/unembedding.js';
export { ThresholdCoder, THRESHOLD_PARAMS, fvuOf } from './threshold-coder.js';
export type { ThresholdKind, ThresholdForward } from './threshold-coder.js';
export type { SparseLatents } from './ops/threshold.js';
export * as thresholdOps from './ops/threshold.js';
export * from './saelens/config.js';
export * from './saelens/format.js';
export { loadSaeLensCoder } from './saelens/load.js';
export { tlAliases, tlUnavailable } from './model/tl-names.js';
export type { TlAlias } from './model/tl-names.js';
export { kindStepReference } from './kinds/reference.js';
export type { KindSpec, KindParams, KindStepReference } from './kinds/reference.js';
