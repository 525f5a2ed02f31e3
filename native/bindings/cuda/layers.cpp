// N-API bindings (CUDA build only): Transformer building blocks on the device (native/cuda/layers.cu): cudaLayerNorm, cudaRmsNorm,
// cudaRope, cudaActivation.
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

// ---------------------------------------------------------------- transformer blocks
// cudaLayerNorm(x [..,D], w? [D], b? [D], {eps}) ; cudaRmsNorm(x, w?, {eps, addOne?})
Napi::Value cuda_layer_norm(const Napi::CallbackInfo& info) {
  Tensor x = arg_tensor(info, 0, "x");
  Tensor w = arg_optional_tensor(info, 1, "w");
  Tensor b = arg_optional_tensor(info, 2, "b");
  float eps = float(opt_number(opts_at(info, 3), "eps", 1e-5));
  expect_float(x, "x");
  if (x.ndim() < 1) fail(ErrorKind::Shape, "x must have at least one dimension");
  if (w.defined()) expect_vec(w, x.dim(-1), "w");
  if (b.defined()) expect_vec(b, x.dim(-1), "b");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [=] { *out = cuda::layer_norm(x, w, b, eps); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

Napi::Value cuda_rms_norm(const Napi::CallbackInfo& info) {
  Tensor x = arg_tensor(info, 0, "x");
  Tensor w = arg_optional_tensor(info, 1, "w");
  Napi::Object o = opts_at(info, 2);
  float eps = float(opt_number(o, "eps", 1e-6));
  bool add_one = opt_bool(o, "addOne", false);
  expect_float(x, "x");
  if (x.ndim() < 1) fail(ErrorKind::Shape, "x must have at least one dimension");
  if (w.defined()) expect_vec(w, x.dim(-1), "w");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [=] { *out = cuda::rms_norm(x, w, eps, add_one); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

// cudaRope(x [T,H,hd], positions int32 [T], {theta, rotaryDim?, neox?})
Napi::Value cuda_rope(const Napi::CallbackInfo& info) {
  Tensor x = arg_tensor(info, 0, "x");
  Tensor pos = arg_tensor(info, 1, "positions");
  Napi::Object o = opts_at(info, 2);
  expect_float(x, "x");
  expect_ndim(x, 3, "x");
  expect_dtype(pos, DType::I32, "positions");
  expect_shape(pos, {x.dim(0)}, "positions");
  double theta = opt_number(o, "theta", 10000);
  int64_t rd = opt_int(o, "rotaryDim", x.dim(2));
  bool neox = opt_bool(o, "neox", true);
  if (!(theta > 0)) fail(ErrorKind::Value, "theta must be > 0");
  if (rd < 0 || rd > x.dim(2) || rd % 2) fail(ErrorKind::Value, "rotaryDim must be even and <= head_dim");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [=] { *out = cuda::rope(x, pos, theta, rd, neox); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

// cudaActivation(x, kind: 'gelu'|'gelu_tanh'|'silu'|'relu')
Napi::Value cuda_activation(const Napi::CallbackInfo& info) {
  Tensor x = arg_tensor(info, 0, "x");
  std::string kind = arg_string(info, 1, "kind");
  cuda::Act a;
  if (kind == "gelu") a = cuda::Act::GeluErf;
  else if (kind == "gelu_tanh" || kind == "gelu_new" || kind == "gelu_pytorch_tanh") a = cuda::Act::GeluTanh;
  else if (kind == "silu") a = cuda::Act::Silu;
  else if (kind == "relu") a = cuda::Act::Relu;
  else fail(ErrorKind::Value, "activation kind must be gelu, gelu_tanh, silu or relu, got '" + kind + "'");
  expect_float(x, "x");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [=] { *out = cuda::activation(x, a); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "cudaLayerNorm", cuda_layer_norm, Accepts::AnyDeviceTensors, Audience::Tests);
  export_fn(env, exports, "cudaRmsNorm", cuda_rms_norm, Accepts::AnyDeviceTensors, Audience::Tests);
  export_fn(env, exports, "cudaRope", cuda_rope, Accepts::AnyDeviceTensors, Audience::Tests);
  export_fn(env, exports, "cudaActivation", cuda_activation, Accepts::AnyDeviceTensors, Audience::Tests);
}

}  // namespace
SPX_REGISTER(cuda_layers, init);
}  // namespace sparsify
