// Device-side dtype conversions that feed the tensor-core kernels: any float dtype ->
// bf16/f16 rows zero-padded to Kp (a multiple of 32), optionally minus a per-column vector
// (x - b_dec), and the transposing variant for B stored [K,N].
#pragma once
#include "cuda/common.cuh"
#include "cuda/cuda_check.h"

namespace sparsify {
namespace cuda {

inline int64_t pad32(int64_t k) { return (k + 31) / 32 * 32; }

template <class T>
__global__ void convert_pad_kernel(const void* __restrict__ src, DType sdt, int64_t rows, int64_t K,
                                   const void* __restrict__ sub, DType sub_dt, T* __restrict__ dst, int64_t Kp) {
  int64_t total = rows * Kp;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = i / Kp, c = i - r * Kp;
    float v = 0.f;
    if (c < K) {
      v = load_f32(src, sdt, r * K + c);
      if (sub) v -= load_f32(sub, sub_dt, c);  // f32 subtraction, then one rounding (as x - b_dec in f32)
    }
    dst[i] = from_f32<T>(v);
  }
}

template <class T>
inline void convert_pad(const void* src, DType sdt, int64_t rows, int64_t K, const void* sub, DType sub_dt, T* dst,
                        int64_t Kp, cudaStream_t s) {
  int64_t total = rows * Kp;
  if (total == 0) return;
  unsigned blocks = unsigned(std::min<int64_t>((total + 255) / 256, 65535LL * 8));
  SPX_LAUNCH(blocks, 256, 0, s, convert_pad_kernel<T>)(src, sdt, rows, K, sub, sub_dt, dst, Kp);
  CUDA_CHECK_LAUNCH();
}

// src [K,N] (any float dtype) -> dst [N,Kp] of T, through 32x32 shared tiles (coalesced both ways).
template <class T>
__global__ void transpose_convert_kernel(const void* __restrict__ src, DType sdt, int64_t K, int64_t N,
                                         T* __restrict__ dst, int64_t Kp) {
  __shared__ float tile[32][33];
  int64_t k0 = int64_t(blockIdx.y) * 32, n0 = int64_t(blockIdx.x) * 32;
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    int64_t k = k0 + i, n = n0 + threadIdx.x;
    tile[i][threadIdx.x] = (k < K && n < N) ? load_f32(src, sdt, k * N + n) : 0.f;
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    int64_t n = n0 + i, k = k0 + threadIdx.x;
    if (n < N && k < Kp) dst[n * Kp + k] = from_f32<T>(tile[threadIdx.x][i]);
  }
}

template <class T>
inline void transpose_convert(const void* src, DType sdt, int64_t K, int64_t N, T* dst, int64_t Kp, cudaStream_t s) {
  if (K == 0 || N == 0) return;
  dim3 grid(ceil_div(N, 32), ceil_div(Kp, 32)), block(32, 8);
  SPX_LAUNCH(grid, block, 0, s, transpose_convert_kernel<T>)(src, sdt, K, N, dst, Kp);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace sparsify
