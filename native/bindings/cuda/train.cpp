// N-API bindings (CUDA build only) of the trainer's device helpers:
//   cudaGatherRows(x [N,D] f32 (host or device), idx int32 [n] (host)) -> Promise<device [n,D] f32>
//   cudaTotalVariance(y [N,D] f32 (host or device)) -> Promise<number>  Σ (y − mean_n y)², on the device
// CPU twin: native/bindings/cpu/train.cpp (kernels: native/cpu/row_gather.cpp, sae_state.cpp total_variance).
#include <memory>

#include "bindings/row_gather_args.h"
#include "core/napi_util.h"
#include "cuda/cuda_ops.h"

namespace sparsify {

namespace {
Napi::Value cuda_gather_rows(const Napi::CallbackInfo& info) {
  Tensor x = arg_tensor(info, 0, "x");
  Tensor idx = arg_tensor(info, 1, "idx");
  check_gather_args(x, idx, "cudaGatherRows", [&] {
    if (idx.device() != Device::CPU) fail(ErrorKind::Device, "cudaGatherRows: idx must be a host (cpu) tensor");
  });
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [x, idx, out] { *out = cuda::gather_rows(x, idx); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

Napi::Value cuda_total_variance(const Napi::CallbackInfo& info) {
  Tensor y = arg_tensor(info, 0, "y");
  expect_dtype(y, DType::F32, "y");
  expect_ndim(y, 2, "y");
  auto result = std::make_shared<double>(0.0);
  return run_async(
      info.Env(), [y, result] { *result = cuda::total_variance(y); },
      [result](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *result); });
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "cudaGatherRows", cuda_gather_rows, Accepts::AnyDeviceTensors);
  export_fn(env, exports, "cudaTotalVariance", cuda_total_variance, Accepts::AnyDeviceTensors);
}
}  // namespace
SPX_REGISTER(cuda_train, init);
}  // namespace sparsify
