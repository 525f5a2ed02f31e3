// cudaGatherRows(x [N,D] f32 (host or device), idx int32 [n] (host)) -> Promise<device [n,D] f32>:
// rows idx of x, on the device. The trainer's exclude_tokens masking when the model forward runs
// on the GPU (the CPU counterpart is trainGatherRows in native/src/bindings/train_ops.cpp).
// Indices are checked on the JS thread, so the kernel never reads outside x.
#include <algorithm>

#include "cuda_context.h"
#include "napi_util.h"

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

Tensor gather_rows(const Tensor& x, const Tensor& idx) {
  const int64_t n = idx.dim(0), D = x.dim(1);
  Session ses;
  cudaStream_t s = ses.stream();
  DeviceTensor dx = upload(x, s), di = upload(idx, s);
  Tensor out = device_empty({n, D}, DType::F32, s);
  if (n * D > 0) {
    const unsigned blocks = unsigned(std::min<int64_t>((n * D + 255) / 256, 65535LL * 8));
    gather_rows_kernel<<<blocks, 256, 0, s>>>(static_cast<const float*>(dx.data()), static_cast<const int*>(di.data()),
                                              n, D, out.data<float>());
    CUDA_CHECK_LAUNCH();
  }
  ses.sync();  // the uploads' host sources may go when we return
  return out;
}

}  // namespace
}  // namespace cuda

namespace {
Napi::Value cuda_gather_rows(const Napi::CallbackInfo& info) {
  Tensor x = arg_tensor(info, 0, "x");
  Tensor idx = arg_tensor(info, 1, "idx");
  expect_dtype(x, DType::F32, "x");
  expect_ndim(x, 2, "x");
  expect_dtype(idx, DType::I32, "idx");
  expect_ndim(idx, 1, "idx");
  if (idx.device() != Device::CPU) fail(ErrorKind::Device, "cudaGatherRows: idx must be a host (cpu) tensor");
  expect_indices_below(idx, x.dim(0), "cudaGatherRows: idx", "a row of x");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [x, idx, out] { *out = cuda::gather_rows(x, idx); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

void init(Napi::Env env, Napi::Object exports) { export_fn(env, exports, "cudaGatherRows", cuda_gather_rows); }
}  // namespace
SPX_REGISTER(cuda_row_gather, init);
}  // namespace sparsify
