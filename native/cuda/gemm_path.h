// Which tensor-core main loop runs on this device, for the dense GEMM and the fused encoder:
// wgmma (sm_90, wgmma_tile.cuh) once both its tile shapes (BM = 128, 64) reproduced the mma.sync
// kernel on the device in bf16 and f16, else mma.sync (mma_tile.cuh). Chosen once per
// process at the first GEMM; SPARSIFY_CUDA_GEMM=mma forces mma.sync (for comparisons).
#pragma once
#include <cuda_runtime.h>

#include <string>

namespace sparsify {
namespace cuda {

struct GemmPath {
  bool wgmma = false;
  std::string why;  // e.g. "wgmma (self-check against mma.sync passed)"
};
// Runs the self-check on `s` the first time (the caller holds a Session).
GemmPath gemm_path(cudaStream_t s);

}  // namespace cuda
}  // namespace sparsify
