// Timing helpers for the device-resident benchmarks (bench/cuda.ts): CUDA events, warm-up,
// median of `iters` runs.
#pragma once
#include <algorithm>
#include <vector>

#include "cuda/cuda_check.h"

namespace sparsify {
namespace cuda {

template <class F>
inline double median_ms(cudaStream_t s, int iters, F&& run) {
  cudaEvent_t e0, e1;
  CUDA_CHECK(cudaEventCreate(&e0));
  CUDA_CHECK(cudaEventCreate(&e1));
  run();  // warm-up
  CUDA_CHECK(cudaStreamSynchronize(s));
  std::vector<float> t;
  for (int i = 0; i < std::max(iters, 1); ++i) {
    CUDA_CHECK(cudaEventRecord(e0, s));
    run();
    CUDA_CHECK(cudaEventRecord(e1, s));
    CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    t.push_back(ms);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Fills n bf16 values with a hash-based pattern in [-0.125, 0.125) without zeros (gemm.cu).
void fill_random_device_bf16(void* p, int64_t n, uint32_t seed, cudaStream_t s);

}  // namespace cuda
}  // namespace sparsify
