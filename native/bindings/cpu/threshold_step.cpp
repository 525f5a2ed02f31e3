// N-API surface of the threshold-coder training step (cpu/threshold_step.h):
//   thresholdStep(w, grads, x, {kind: 'relu'|'jumprelu', l1Coefficient, lpNorm, l0Coefficient, bandwidth,
//                 sparsityLoss: 'step'|'tanh', tanhScale, lossScale, didFire?, preActCoefficient?, dead?})
//                 -> Promise<{mse, sparsity, preAct, loss}>
//   batchTopKStep(w, grads, x, {k, widths?: number[], lossScale, didFire?, perRow?, auxCoefficient?, dead?}) (perRow: TopK per row)
//                 -> Promise<{mse, inner, aux, loss, minKept, kept}>
// dead (int32 [M], host): the dead latents of JumpReLU's pre-act loss and of AuxK.
// w / grads = { encW [M,D], encB [M], logThreshold? [M] (jumprelu), W_dec [M,D], b_dec [D] } (float32);
// gradients are added into grads; didFire (int32 [M]) gets 1 for each latent that fired.
#include <cstdint>
#include <memory>
#include <utility>

#include "bindings/threshold_args.h"
#include "core/napi_util.h"
#include "cpu/batchtopk_step.h"
#include "cpu/threshold_step.h"

namespace sparsify {
namespace {

Napi::Value threshold_step_js(const Napi::CallbackInfo& info) {
  Napi::Object o = arg_object(info, 3, "options");
  const ThresholdStepSpec s = read_threshold_step_spec(o);
  const std::pair<int64_t, int64_t> shape = read_step_latent_shape(info, BindingSide::Cpu);
  const int64_t M = shape.first, D = shape.second;
  StepTensors w = read_step_tensors(info[0], "weights", s.jumprelu, M, D, false, BindingSide::Cpu);
  StepTensors g = read_step_tensors(info[1], "grads", s.jumprelu, M, D, true, BindingSide::Cpu);
  Tensor fired = read_step_did_fire(o, M, BindingSide::Cpu);
  Tensor dead = read_step_dead(o, M);
  Tensor x = read_tokens_x(info, 2, D);
  auto out = std::make_shared<ThresholdStepLosses>();
  return run_async(
      info.Env(),
      [w, g, x, s, M, D, out, fired, dead] {
        ThresholdStepWeights wv{D, M, w.encW.data<float>(), w.encB.data<float>(), s.jumprelu ? w.logThreshold.data<float>() : nullptr,
                                w.W_dec.data<float>(), w.b_dec.data<float>(), dead.defined() ? dead.data<int32_t>() : nullptr};
        ThresholdStepGrads gv{g.encW.data<float>(), g.encB.data<float>(), s.jumprelu ? g.logThreshold.data<float>() : nullptr,
                              g.W_dec.data<float>(), g.b_dec.data<float>(), fired.defined() ? fired.data<int32_t>() : nullptr};
        *out = threshold_step(wv, s, x.dim(0), x.data<float>(), gv);
      },
      [out](Napi::Env env) -> Napi::Value { return threshold_step_losses_js(env, *out); });
}

Napi::Value batchtopk_step_js(const Napi::CallbackInfo& info) {
  Napi::Object o = arg_object(info, 3, "options");
  const BatchTopKSpec s = read_batchtopk_spec(o);
  const std::pair<int64_t, int64_t> shape = read_step_latent_shape(info, BindingSide::Cpu);
  const int64_t M = shape.first, D = shape.second;
  StepTensors w = read_step_tensors(info[0], "weights", false, M, D, false, BindingSide::Cpu);
  StepTensors g = read_step_tensors(info[1], "grads", false, M, D, true, BindingSide::Cpu);
  Tensor fired = read_step_did_fire(o, M, BindingSide::Cpu);
  Tensor dead = read_step_dead(o, M);
  Tensor x = read_tokens_x(info, 2, D);
  auto out = std::make_shared<BatchTopKLosses>();
  return run_async(
      info.Env(),
      [w, g, x, s, M, D, out, fired, dead] {
        ThresholdStepWeights wv{D, M, w.encW.data<float>(), w.encB.data<float>(), nullptr, w.W_dec.data<float>(), w.b_dec.data<float>(),
                                dead.defined() ? dead.data<int32_t>() : nullptr};
        ThresholdStepGrads gv{g.encW.data<float>(), g.encB.data<float>(), nullptr, g.W_dec.data<float>(), g.b_dec.data<float>(),
                              fired.defined() ? fired.data<int32_t>() : nullptr};
        *out = batchtopk_step(wv, s, x.dim(0), x.data<float>(), gv);
      },
      [out](Napi::Env env) -> Napi::Value { return batchtopk_step_losses_js(env, *out); });
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "thresholdStep", threshold_step_js);
  export_fn(env, exports, "batchTopKStep", batchtopk_step_js);
}

}  // namespace
SPX_REGISTER(threshold_step_ops, init);
}  // namespace sparsify
