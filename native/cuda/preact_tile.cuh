// The f32 pre-activation tile of the SAELens kinds' CUDA kernels (threshold_encode.cu,
// batchtopk_step.cu): a TR x TL block of xin · Wᵀ on CUDA cores. CPU twin: the tile-wise GEMM of
// native/cpu/threshold_encode.cpp.
#pragma once
#include <cstdint>

#include "cuda/common.cuh"

namespace sparsify {
namespace cuda {

constexpr int TR = 32;  // rows per CTA
constexpr int TL = 32;  // latents per tile
constexpr int TK = 32;  // K slice

// acc[i] = xin[r0 + rg + 8 i] · B[col] for a TR x TL tile, 256 threads (col = tid % TL,
// rg = tid / TL), K in shared-memory slices of TK with coalesced loads along D; brow(r) is tile
// row r's row of W (null: outside, zeros). The threshold encoder, BatchTopK's selection and its
// AuxK scores share it, so all of them round h the same way (f32 FMA in k order).
template <class BRow>
__device__ __forceinline__ void tile_preact(float (&As)[TR][TK + 1], float (&Bs)[TL][TK + 1], const float* __restrict__ xin,
                                            int64_t N, int64_t D, int64_t r0, BRow brow, float (&acc)[4]) {
  const int tid = threadIdx.x, col = tid % TL, rg = tid / TL;
  for (int i = 0; i < 4; ++i) acc[i] = 0.f;
  for (int64_t k0 = 0; k0 < D; k0 += TK) {
    __syncthreads();
    for (int e = tid; e < TR * TK; e += 256) {
      const int r = e / TK, k = e % TK;
      const int64_t n = r0 + r, d = k0 + k;
      const float* b = brow(r);
      As[r][k] = n < N && d < D ? xin[n * D + d] : 0.f;
      Bs[r][k] = b && d < D ? b[d] : 0.f;
    }
    __syncthreads();
#pragma unroll 8
    for (int k = 0; k < TK; ++k) {
      const float b = Bs[col][k];
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[i] = fmaf(As[rg + 8 * i][k], b, acc[i]);
    }
  }
}

}  // namespace cuda
}  // namespace sparsify
