// N-API bindings (CUDA build only): Fused attention forward on the device (native/cuda/attention.cu): cudaAttention.
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

// cudaAttention(q [T,Hq,hd], k [T,Hkv,hd], v [T,Hkv,hd], {scale?, causal?, window?, softcap?})
Napi::Value cuda_attention(const Napi::CallbackInfo& info) {
  Tensor q = arg_tensor(info, 0, "q");
  Tensor k = arg_tensor(info, 1, "k");
  Tensor v = arg_tensor(info, 2, "v");
  Napi::Object o = opts_at(info, 3);
  cuda::AttentionOptions ao;
  ao.scale = float(opt_number(o, "scale", 0));
  ao.causal = opt_bool(o, "causal", true);
  ao.window = opt_int(o, "window", 0);
  ao.softcap = float(opt_number(o, "softcap", 0));
  for (auto [t, n] : {std::pair<Tensor*, const char*>{&q, "q"}, {&k, "k"}, {&v, "v"}}) {
    expect_float(*t, n);
    expect_ndim(*t, 3, n);
  }
  expect_shape(v, k.shape, "v");
  if (k.dim(0) != q.dim(0) || k.dim(2) != q.dim(2))
    fail(ErrorKind::Shape, "k is " + shape_str(k.shape) + " but q is " + shape_str(q.shape));
  if (k.dim(1) < 1 || q.dim(1) % k.dim(1) != 0)
    fail(ErrorKind::Shape, "query heads (" + std::to_string(q.dim(1)) + ") must be a multiple of kv heads (" +
                               std::to_string(k.dim(1)) + ")");
  if (q.dim(2) > 256) fail(ErrorKind::Value, "cudaAttention supports head_dim <= 256");
  if (ao.window < 0) fail(ErrorKind::Value, "window must be >= 0");
  if (ao.window > 0 && !ao.causal) fail(ErrorKind::Value, "a sliding window needs causal attention");
  if (ao.scale < 0 || ao.softcap < 0) fail(ErrorKind::Value, "scale and softcap must be >= 0");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [=] { *out = cuda::attention(q, k, v, ao); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "cudaAttention", cuda_attention, Accepts::AnyDeviceTensors, Audience::Tests);
}

}  // namespace
SPX_REGISTER(cuda_attention, init);
}  // namespace sparsify
