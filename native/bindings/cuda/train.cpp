// N-API bindings (CUDA build only) of the trainer's device helpers:
//   cudaGatherRows(x [N,D] f32 (host or device), idx int32 [n] (host)) -> Promise<device [n,D] f32>
// CPU twin: native/bindings/cpu/train.cpp (kernel: native/cpu/row_gather.cpp).
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

void init(Napi::Env env, Napi::Object exports) { export_fn(env, exports, "cudaGatherRows", cuda_gather_rows, Accepts::AnyDeviceTensors); }
}  // namespace
SPX_REGISTER(cuda_train, init);
}  // namespace sparsify
