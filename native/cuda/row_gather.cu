// Row gather on the device: out[r] = x[idx[r]] (the trainer's exclude_tokens masking when the model
// forward runs on the GPU; CPU twin: native/cpu/row_gather.cpp). The binding
// (cudaGatherRows, native/bindings/cuda/train.cpp) checks the indices, so the kernel never reads
// outside x.
#include <algorithm>

#include "cuda/cuda_context.h"
#include "cuda/cuda_ops.h"
#include "cuda/launch.cuh"

namespace sparsify {
namespace cuda {
namespace {

__global__ void gather_rows_kernel(const float* __restrict__ x, const int* __restrict__ idx, int64_t n, int64_t D,
                                   float* __restrict__ out) {
  const int64_t total = n * D;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / D, c = i - r * D;
    out[i] = x[int64_t(idx[r]) * D + c];
  }
}

}  // namespace

Tensor gather_rows(const Tensor& x, const Tensor& idx) {
  const int64_t n = idx.dim(0), D = x.dim(1);
  Session ses;
  cudaStream_t s = ses.stream();
  DeviceTensor dx = upload(x, s), di = upload(idx, s);
  Tensor out = device_empty({n, D}, DType::F32, s);
  if (n * D > 0) {
    const unsigned blocks = unsigned(std::min<int64_t>((n * D + 255) / 256, 65535LL * 8));
    SPX_LAUNCH(blocks, 256, 0, s, gather_rows_kernel)(static_cast<const float*>(dx.data()), static_cast<const int*>(di.data()),
                                              n, D, out.data<float>());
    CUDA_CHECK_LAUNCH();
  }
  ses.sync();  // the uploads' host sources may go when we return
  return out;
}

}  // namespace cuda
}  // namespace sparsify
