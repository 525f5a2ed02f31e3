// N-API bindings (CUDA build only): The sparse backward passes on the device (native/cuda/sae_backward.cu): cudaDecodeBackward,
// cudaEncoderBackward.
// GPU failures reject with DeviceError (codes: ERR_SPARSIFY_CUDA_OOM, _STICKY, _UNAVAILABLE, ERR_SPARSIFY_DEVICE).
#include <cuda_runtime_api.h>

#include <cmath>
#include <functional>
#include <memory>

#include "bindings/cuda/cuda_binding_util.h"
#include "cuda/cuda_check.h"
#include "cuda/cuda_context.h"
#include "cuda/cuda_ops.h"
#include "core/napi_util.h"

namespace sparsify {
namespace {
using namespace cuda_binding;

// cudaDecodeBackward(gradOut [N,D], acts, indices, wDec) -> Promise<{gradWDec, gradActs, gradBDec}>
Napi::Value cuda_decode_backward(const Napi::CallbackInfo& info) {
  Tensor g = arg_tensor(info, 0, "gradOut");
  Tensor a = arg_tensor(info, 1, "acts");
  Tensor i = arg_tensor(info, 2, "indices");
  Tensor w = arg_tensor(info, 3, "wDec");
  check_sparse_pair(a, i, "acts", "indices");
  expect_float(w, "wDec");
  expect_ndim(w, 2, "wDec");
  expect_float(g, "gradOut");
  expect_shape(g, {a.dim(0), w.dim(1)}, "gradOut");
  expect_indices(i, w.dim(0), "indices");
  auto res = std::make_shared<cuda::DecodeGrads>();
  return run_async(
      info.Env(), [=] { *res = cuda::decode_backward(g, a, i, w); },
      [res](Napi::Env env) -> Napi::Value {
        return wrap_all(env, {{"gradWDec", res->grad_w_dec}, {"gradActs", res->grad_acts}, {"gradBDec", res->grad_b_dec}});
      });
}

// cudaEncoderBackward(gradActs [N,k], indices, xIn [N,D], wEnc [M,D]) -> Promise<{gradX, gradWEnc, gradBEnc}>
Napi::Value cuda_encoder_backward(const Napi::CallbackInfo& info) {
  Tensor g = arg_tensor(info, 0, "gradActs");
  Tensor i = arg_tensor(info, 1, "indices");
  Tensor x = arg_tensor(info, 2, "xIn");
  Tensor w = arg_tensor(info, 3, "wEnc");
  check_sparse_pair(g, i, "gradActs", "indices");
  expect_float(w, "wEnc");
  expect_ndim(w, 2, "wEnc");
  expect_float(x, "xIn");
  expect_shape(x, {g.dim(0), w.dim(1)}, "xIn");
  expect_indices(i, w.dim(0), "indices");
  auto res = std::make_shared<cuda::EncoderGrads>();
  return run_async(
      info.Env(), [=] { *res = cuda::encoder_backward(g, i, x, w); },
      [res](Napi::Env env) -> Napi::Value {
        return wrap_all(env, {{"gradX", res->grad_x}, {"gradWEnc", res->grad_w_enc}, {"gradBEnc", res->grad_b_enc}});
      });
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "cudaDecodeBackward", cuda_decode_backward, Accepts::AnyDeviceTensors, Audience::Tests);
  export_fn(env, exports, "cudaEncoderBackward", cuda_encoder_backward, Accepts::AnyDeviceTensors, Audience::Tests);
}

}  // namespace
SPX_REGISTER(cuda_sae_backward, init);
}  // namespace sparsify
