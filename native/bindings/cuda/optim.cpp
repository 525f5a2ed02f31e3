// N-API bindings (CUDA build only): Decoder maintenance and optimizer updates on the device (native/cuda/optim.cu; CPU twin:
// native/bindings/cpu/sae.cpp optimStep): cudaNormalizeRows, cudaProjectGrad, cudaAdamStep, cudaSignumStep.
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

// cudaNormalizeRows(w [M,D], {eps?}) / cudaProjectGrad(grad [M,D], w [M,D]) -> Promise<[M,D] f32>
Napi::Value cuda_normalize_rows(const Napi::CallbackInfo& info) {
  Tensor w = arg_tensor(info, 0, "w");
  Napi::Object opts = opts_at(info, 1);
  float eps = float(opt_number(opts, "eps", 1.1920928955078125e-07));
  expect_float(w, "w");
  expect_ndim(w, 2, "w");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [=] { *out = cuda::normalize_rows(w, eps); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

Napi::Value cuda_project_grad(const Napi::CallbackInfo& info) {
  Tensor g = arg_tensor(info, 0, "grad");
  Tensor w = arg_tensor(info, 1, "w");
  expect_float(w, "w");
  expect_ndim(w, 2, "w");
  expect_float(g, "grad");
  expect_shape(g, w.shape, "grad");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [=] { *out = cuda::project_grad(g, w); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

// cudaAdamStep(param, grad, m, v, {lr, beta1?, beta2?, eps?, step}) -> Promise<{param, m, v}>
Napi::Value cuda_adam_step(const Napi::CallbackInfo& info) {
  Tensor p = arg_tensor(info, 0, "param");
  Tensor g = arg_tensor(info, 1, "grad");
  Tensor m = arg_tensor(info, 2, "m");
  Tensor v = arg_tensor(info, 3, "v");
  Napi::Object o = opts_at(info, 4);
  double lr = opt_number(o, "lr", -1), b1 = opt_number(o, "beta1", 0.9), b2 = opt_number(o, "beta2", 0.999);
  double eps = opt_number(o, "eps", 1e-8);
  int64_t step = opt_int(o, "step", 0);
  if (!(lr >= 0)) fail(ErrorKind::Value, "cudaAdamStep: lr must be >= 0");
  if (step < 1) fail(ErrorKind::Value, "cudaAdamStep: step must be >= 1 (the step count after this update)");
  if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1)) fail(ErrorKind::Value, "cudaAdamStep: betas must be in [0, 1)");
  for (auto [t, n] : {std::pair<Tensor*, const char*>{&p, "param"}, {&g, "grad"}, {&m, "m"}, {&v, "v"}}) {
    expect_float(*t, n);
    expect_shape(*t, p.shape, n);
  }
  auto res = std::make_shared<cuda::AdamState>();
  return run_async(
      info.Env(), [=] { *res = cuda::adam_step(p, g, m, v, lr, b1, b2, eps, step); },
      [res](Napi::Env env) -> Napi::Value { return wrap_all(env, {{"param", res->param}, {"m", res->m}, {"v", res->v}}); });
}

// cudaSignumStep(y, z, grad, {lr, c, beta?}) -> Promise<{y, z}>
Napi::Value cuda_signum_step(const Napi::CallbackInfo& info) {
  Tensor y = arg_tensor(info, 0, "y");
  Tensor z = arg_tensor(info, 1, "z");
  Tensor g = arg_tensor(info, 2, "grad");
  Napi::Object o = opts_at(info, 3);
  double lr = opt_number(o, "lr", -1), c = opt_number(o, "c", -1), beta = opt_number(o, "beta", 0.95);
  if (!(lr > 0)) fail(ErrorKind::Value, "cudaSignumStep: lr must be > 0 (SignSGD rejects lr <= 0)");
  if (!(c >= 0 && c <= 1)) fail(ErrorKind::Value, "cudaSignumStep: c must be in [0, 1]");
  if (!(beta > 0 && beta < 1)) fail(ErrorKind::Value, "cudaSignumStep: beta must be in (0, 1)");
  for (auto [t, n] : {std::pair<Tensor*, const char*>{&y, "y"}, {&z, "z"}, {&g, "grad"}}) {
    expect_float(*t, n);
    expect_shape(*t, y.shape, n);
  }
  auto res = std::make_shared<cuda::SignumState>();
  return run_async(
      info.Env(), [=] { *res = cuda::signum_step(y, z, g, lr, c, beta); },
      [res](Napi::Env env) -> Napi::Value { return wrap_all(env, {{"y", res->y}, {"z", res->z}}); });
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "cudaNormalizeRows", cuda_normalize_rows, Accepts::AnyDeviceTensors, Audience::Tests);
  export_fn(env, exports, "cudaProjectGrad", cuda_project_grad, Accepts::AnyDeviceTensors, Audience::Tests);
  export_fn(env, exports, "cudaAdamStep", cuda_adam_step, Accepts::AnyDeviceTensors, Audience::Tests);
  export_fn(env, exports, "cudaSignumStep", cuda_signum_step, Accepts::AnyDeviceTensors, Audience::Tests);
}

}  // namespace
SPX_REGISTER(cuda_optim, init);
}  // namespace sparsify
