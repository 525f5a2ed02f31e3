// N-API surface of the threshold-coder training steps on the device (CUDA build only; kernels:
// native/cuda/threshold_step.cu, batchtopk_step.cu; CPU twin: native/bindings/cpu/threshold_step.cpp):
//   cudaThresholdStep(w, grads, x, opts) -> Promise<{mse, sparsity, preAct, loss}>
//   cudaBatchTopKStep(w, grads, x, opts) -> Promise<{mse, inner, aux, loss, minKept, kept}>
// Same arguments and results as thresholdStep / batchTopKStep; tensors on the host or the device
// (gradients are added in place where they are).
#include <memory>

#include "bindings/threshold_args.h"
#include "core/napi_util.h"
#include "cuda/threshold_step_device.h"

namespace sparsify {
namespace {

// The device step's arguments: the neutral spec's options, then the weights and gradient sets.
cuda::ThresholdStepArgs device_args(const ThresholdStepSpec& s, const StepTensors& w, const StepTensors& g) {
  cuda::ThresholdStepArgs a;
  a.jumprelu = s.jumprelu;
  a.l1_coefficient = s.l1_coefficient;
  a.lp_norm = s.lp_norm;
  a.l0_coefficient = s.l0_coefficient;
  a.bandwidth = s.bandwidth;
  a.tanh_l0 = s.tanh_l0;
  a.tanh_scale = s.tanh_scale;
  a.loss_scale = s.loss_scale;
  a.apply_b_dec = s.apply_b_dec;
  a.pre_act_coefficient = s.pre_act_coefficient;
  a.w_enc = w.encW, a.b_enc = w.encB, a.log_threshold = w.logThreshold, a.w_dec = w.W_dec, a.b_dec = w.b_dec;
  a.g_w_enc = g.encW, a.g_b_enc = g.encB, a.g_log_threshold = g.logThreshold, a.g_w_dec = g.W_dec, a.g_b_dec = g.b_dec;
  return a;
}

cuda::BatchTopKStepArgs device_args(const BatchTopKSpec& s, const StepTensors& w, const StepTensors& g) {
  cuda::BatchTopKStepArgs a;
  a.k = s.k;
  a.loss_scale = s.loss_scale;
  a.per_row = s.per_row;
  a.apply_b_dec = s.apply_b_dec;
  a.widths = s.widths;
  a.aux_coefficient = s.aux_coefficient;
  a.w_enc = w.encW, a.b_enc = w.encB, a.w_dec = w.W_dec, a.b_dec = w.b_dec;
  a.g_w_enc = g.encW, a.g_b_enc = g.encB, a.g_w_dec = g.W_dec, a.g_b_dec = g.b_dec;
  return a;
}

Napi::Value cuda_threshold_step(const Napi::CallbackInfo& info) {
  Napi::Object o = arg_object(info, 3, "options");
  const ThresholdStepSpec s = read_threshold_step_spec(o);
  const auto [M, D] = read_step_latent_shape(info, BindingSide::Cuda);
  Tensor fired = read_step_did_fire(o, M, BindingSide::Cuda);
  StepTensors w = read_step_tensors(info[0], "weights", s.jumprelu, M, D, false, BindingSide::Cuda);
  StepTensors g = read_step_tensors(info[1], "grads", s.jumprelu, M, D, true, BindingSide::Cuda);
  cuda::ThresholdStepArgs a = device_args(s, w, g);
  a.did_fire = fired;
  a.dead = read_step_dead(o, M);
  a.x = read_tokens_x(info, 2, D);
  auto out = std::make_shared<cuda::ThresholdStepLossesDev>();
  return run_async(
      info.Env(), [a, out] { *out = cuda::threshold_step(a); },
      [out](Napi::Env env) -> Napi::Value { return threshold_step_losses_js(env, *out); });
}

Napi::Value cuda_batchtopk_step(const Napi::CallbackInfo& info) {
  Napi::Object o = arg_object(info, 3, "options");
  const BatchTopKSpec s = read_batchtopk_spec(o);
  const auto [M, D] = read_step_latent_shape(info, BindingSide::Cuda);
  Tensor fired = read_step_did_fire(o, M, BindingSide::Cuda);
  StepTensors w = read_step_tensors(info[0], "weights", false, M, D, false, BindingSide::Cuda);
  StepTensors g = read_step_tensors(info[1], "grads", false, M, D, true, BindingSide::Cuda);
  cuda::BatchTopKStepArgs a = device_args(s, w, g);
  a.did_fire = fired;
  a.dead = read_step_dead(o, M);
  a.x = read_tokens_x(info, 2, D);
  auto out = std::make_shared<cuda::BatchTopKLossesDev>();
  return run_async(
      info.Env(), [a, out] { *out = cuda::batchtopk_step(a); },
      [out](Napi::Env env) -> Napi::Value { return batchtopk_step_losses_js(env, *out); });
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "cudaThresholdStep", cuda_threshold_step, Accepts::AnyDeviceTensors);
  export_fn(env, exports, "cudaBatchTopKStep", cuda_batchtopk_step, Accepts::AnyDeviceTensors);
}

}  // namespace
SPX_REGISTER(cuda_threshold_step, init);
}  // namespace sparsify
