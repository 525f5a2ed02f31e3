// Device helpers shared by the kernels: dtype-generic loads, warp reductions, launch sizing.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"
#include "launch.cuh"

namespace sparsify {
namespace cuda {

constexpr unsigned FULL_MASK = 0xffffffffu;

// Element i of a float buffer of dtype `t` (F32, BF16, F16) as f32. `t` is uniform across the
// grid, so the switch does not diverge.
__device__ __forceinline__ float load_f32(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::BF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case DType::F16: return __half2float(static_cast<const __half*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}

template <class T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
  return v;
}

// Block-wide sum for blockDim.x a multiple of 32 (<= 1024); every thread gets the result.
// Fixed reduction tree: deterministic for a given launch shape.
__device__ __forceinline__ float block_sum(float v, float* scratch /* >= 32 floats */) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < nw ? scratch[lane] : 0.f;
  return warp_sum(t);
}

// The same in double (sums of f32 squares, as the CPU's double accumulators).
__device__ __forceinline__ double block_sum_f64(double v, double* scratch /* >= 32 doubles */) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  double t = lane < nw ? scratch[lane] : 0.0;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(FULL_MASK, t, o);
  return t;
}

// torch.lerp's two f32 formulas (aten/src/ATen/native/Lerp.h), rounded as written (no FMA).
__device__ __forceinline__ float lerp_small(float a, float b, float w) {  // |w| < 0.5
  return __fadd_rn(a, __fmul_rn(w, __fsub_rn(b, a)));
}
__device__ __forceinline__ float lerp_large(float a, float b, float one_minus_w) {  // |w| >= 0.5
  return __fsub_rn(b, __fmul_rn(__fsub_rn(b, a), one_minus_w));
}

inline unsigned ceil_div(int64_t a, int64_t b) { return unsigned((a + b - 1) / b); }

}  // namespace cuda
}  // namespace sparsify
