// N-API surface of the threshold-coder training steps on the device (CUDA build only; kernels:
// native/cuda/threshold_step.cu, batchtopk_step.cu; CPU twin: native/bindings/cpu/threshold_step.cpp):
//   cudaThresholdStep(w, grads, x, opts) -> Promise<{mse, sparsity, loss}>
//   cudaBatchTopKStep(w, grads, x, opts) -> Promise<{mse, inner, loss, minKept, kept}>
// Same arguments and results as thresholdStep / batchTopKStep; tensors on the host or the device
// (gradients are added in place where they are).
#include <memory>
#include <string>

#include "core/napi_util.h"
#include "cuda/threshold_step_device.h"

namespace sparsify {
namespace {

struct StepTensors {
  Tensor encW, encB, logThreshold, W_dec, b_dec;
};

StepTensors read_set(Napi::Value v, const char* what, bool jumprelu, int64_t M, int64_t D, bool writable) {
  if (!v.IsObject()) fail(ErrorKind::Value, std::string(what) + " must be an object of tensors");
  Napi::Object o = v.As<Napi::Object>();
  StepTensors t{opt_tensor(o, "encW"), opt_tensor(o, "encB"), opt_tensor(o, "logThreshold"), opt_tensor(o, "W_dec"), opt_tensor(o, "b_dec")};
  auto check = [&](const Tensor& x, const std::vector<int64_t>& shape, const std::string& name) {
    if (!x.defined()) fail(ErrorKind::Value, std::string(what) + " needs " + name);
    expect_dtype(x, DType::F32, (std::string(what) + " " + name).c_str());
    expect_shape(x, shape, (std::string(what) + " " + name).c_str());
    if (writable && x.device() == Device::CPU && x.storage && !x.storage->owned_heap)
      fail(ErrorKind::Value, std::string(what) + " " + name + " is read-only (memory-mapped from a file)");
  };
  check(t.encW, {M, D}, "encW");
  check(t.encB, {M}, "encB");
  check(t.W_dec, {M, D}, "W_dec");
  check(t.b_dec, {D}, "b_dec");
  if (jumprelu) check(t.logThreshold, {M}, "logThreshold");
  return t;
}

// The optional int32 [M] didFire of the options (1 = the latent fired in this batch), host or device.
Tensor read_did_fire(const Napi::Object& o, int64_t M) {
  Tensor t = opt_tensor(o, "didFire");
  if (!t.defined()) return t;
  expect_dtype(t, DType::I32, "didFire");
  expect_shape(t, {M}, "didFire");
  if (t.device() == Device::CPU && t.storage && !t.storage->owned_heap)
    fail(ErrorKind::Value, "didFire is read-only (memory-mapped from a file)");
  return t;
}

std::pair<int64_t, int64_t> latent_shape(const Napi::CallbackInfo& info) {
  if (!info[0].IsObject()) fail(ErrorKind::Value, "weights must be an object of tensors");
  Tensor encW = opt_tensor(info[0].As<Napi::Object>(), "encW");
  if (!encW.defined() || encW.ndim() != 2) fail(ErrorKind::Shape, "weights encW must be a [num_latents, d_in] tensor");
  if (encW.dim(0) >= (int64_t(1) << 31)) fail(ErrorKind::Shape, "weights encW has >= 2^31 latents");
  return {encW.dim(0), encW.dim(1)};
}

Tensor read_x(const Napi::CallbackInfo& info, int64_t D) {
  Tensor x = arg_tensor(info, 2, "x");
  expect_dtype(x, DType::F32, "x");
  if (x.ndim() != 2 || x.dim(1) != D) fail(ErrorKind::Shape, "x must be [tokens, " + std::to_string(D) + "], got " + shape_str(x.shape));
  return x;
}

Napi::Value cuda_threshold_step(const Napi::CallbackInfo& info) {
  Napi::Object o = arg_object(info, 3, "options");
  const std::string kind = opt_string(o, "kind", "");
  if (kind != "relu" && kind != "jumprelu") fail(ErrorKind::Value, "thresholdStep: kind must be 'relu' or 'jumprelu', got '" + kind + "'");
  cuda::ThresholdStepArgs a;
  a.jumprelu = kind == "jumprelu";
  a.l1_coefficient = opt_number(o, "l1Coefficient", 0);
  a.l0_coefficient = opt_number(o, "l0Coefficient", 0);
  a.bandwidth = opt_number(o, "bandwidth", 0.05);
  const std::string mode = opt_string(o, "sparsityLoss", "step");
  if (mode != "step" && mode != "tanh") fail(ErrorKind::Value, "thresholdStep: sparsityLoss must be 'step' or 'tanh', got '" + mode + "'");
  a.tanh_l0 = mode == "tanh";
  a.tanh_scale = opt_number(o, "tanhScale", 4.0);
  a.loss_scale = opt_number(o, "lossScale", 1.0);
  a.apply_b_dec = opt_bool(o, "applyBDecToInput", true);
  const auto [M, D] = latent_shape(info);
  a.did_fire = read_did_fire(o, M);
  StepTensors w = read_set(info[0], "weights", a.jumprelu, M, D, false);
  StepTensors g = read_set(info[1], "grads", a.jumprelu, M, D, true);
  a.x = read_x(info, D);
  a.w_enc = w.encW, a.b_enc = w.encB, a.log_threshold = w.logThreshold, a.w_dec = w.W_dec, a.b_dec = w.b_dec;
  a.g_w_enc = g.encW, a.g_b_enc = g.encB, a.g_log_threshold = g.logThreshold, a.g_w_dec = g.W_dec, a.g_b_dec = g.b_dec;
  auto out = std::make_shared<cuda::ThresholdStepLossesDev>();
  return run_async(
      info.Env(), [a, out] { *out = cuda::threshold_step(a); },
      [out](Napi::Env env) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        r.Set("mse", out->mse);
        r.Set("sparsity", out->sparsity);
        r.Set("loss", out->loss);
        return r;
      });
}

Napi::Value cuda_batchtopk_step(const Napi::CallbackInfo& info) {
  Napi::Object o = arg_object(info, 3, "options");
  cuda::BatchTopKStepArgs a;
  a.k = opt_number(o, "k", 0);
  a.loss_scale = opt_number(o, "lossScale", 1.0);
  a.per_row = opt_bool(o, "perRow", false);
  a.apply_b_dec = opt_bool(o, "applyBDecToInput", true);
  Napi::Value wv = o.Get("widths");
  if (!wv.IsUndefined() && !wv.IsNull()) {
    if (!wv.IsArray()) fail(ErrorKind::Value, "batchTopKStep: widths must be an array of integers");
    Napi::Array arr = wv.As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      Napi::Value e = arr.Get(i);
      if (!e.IsNumber()) fail(ErrorKind::Value, "batchTopKStep: widths must be an array of integers");
      a.widths.push_back(e.As<Napi::Number>().Int64Value());
    }
  }
  const auto [M, D] = latent_shape(info);
  a.did_fire = read_did_fire(o, M);
  StepTensors w = read_set(info[0], "weights", false, M, D, false);
  StepTensors g = read_set(info[1], "grads", false, M, D, true);
  a.x = read_x(info, D);
  a.w_enc = w.encW, a.b_enc = w.encB, a.w_dec = w.W_dec, a.b_dec = w.b_dec;
  a.g_w_enc = g.encW, a.g_b_enc = g.encB, a.g_w_dec = g.W_dec, a.g_b_dec = g.b_dec;
  auto out = std::make_shared<cuda::BatchTopKLossesDev>();
  return run_async(
      info.Env(), [a, out] { *out = cuda::batchtopk_step(a); },
      [out](Napi::Env env) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        r.Set("mse", out->mse);
        r.Set("inner", out->inner);
        r.Set("loss", out->loss);
        r.Set("minKept", out->min_kept);
        r.Set("kept", double(out->kept));
        return r;
      });
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "cudaThresholdStep", cuda_threshold_step, Accepts::AnyDeviceTensors);
  export_fn(env, exports, "cudaBatchTopKStep", cuda_batchtopk_step, Accepts::AnyDeviceTensors);
}

}  // namespace
SPX_REGISTER(cuda_threshold_step, init);
}  // namespace sparsify
