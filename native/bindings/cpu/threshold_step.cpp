// N-API surface of the threshold-coder training step (cpu/threshold_step.h):
//   thresholdStep(w, grads, x, {kind: 'relu'|'jumprelu', l1Coefficient, l0Coefficient, bandwidth,
//                 sparsityLoss: 'step'|'tanh', tanhScale, lossScale, didFire?}) -> Promise<{mse, sparsity, loss}>
//   batchTopKStep(w, grads, x, {k, widths?: number[], lossScale, didFire?, perRow?}) (perRow: TopK per row) -> Promise<{mse, inner, loss, minKept, kept}>
// w / grads = { encW [M,D], encB [M], logThreshold? [M] (jumprelu), W_dec [M,D], b_dec [D] } (float32);
// gradients are added into grads; didFire (int32 [M]) gets 1 for each latent that fired.
#include <string>

#include "core/napi_util.h"
#include "cpu/batchtopk_step.h"
#include "cpu/threshold_step.h"

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
    if (writable && x.storage && !x.storage->owned_heap)
      fail(ErrorKind::Value, std::string(what) + " " + name + " is read-only (memory-mapped from a file)");
  };
  check(t.encW, {M, D}, "encW");
  check(t.encB, {M}, "encB");
  check(t.W_dec, {M, D}, "W_dec");
  check(t.b_dec, {D}, "b_dec");
  if (jumprelu) check(t.logThreshold, {M}, "logThreshold");
  return t;
}

// The optional int32 [M] didFire of the options (1 = the latent fired in this batch).
Tensor read_did_fire(const Napi::Object& o, int64_t M) {
  Tensor t = opt_tensor(o, "didFire");
  if (!t.defined()) return t;
  expect_dtype(t, DType::I32, "didFire");
  expect_shape(t, {M}, "didFire");
  if (t.storage && !t.storage->owned_heap) fail(ErrorKind::Value, "didFire is read-only (memory-mapped from a file)");
  return t;
}

Napi::Value threshold_step_js(const Napi::CallbackInfo& info) {
  Napi::Object o = arg_object(info, 3, "options");
  const std::string kind = opt_string(o, "kind", "");
  if (kind != "relu" && kind != "jumprelu") fail(ErrorKind::Value, "thresholdStep: kind must be 'relu' or 'jumprelu', got '" + kind + "'");
  ThresholdStepSpec s;
  s.jumprelu = kind == "jumprelu";
  s.l1_coefficient = opt_number(o, "l1Coefficient", 0);
  s.l0_coefficient = opt_number(o, "l0Coefficient", 0);
  s.bandwidth = opt_number(o, "bandwidth", 0.05);
  const std::string mode = opt_string(o, "sparsityLoss", "step");
  if (mode != "step" && mode != "tanh") fail(ErrorKind::Value, "thresholdStep: sparsityLoss must be 'step' or 'tanh', got '" + mode + "'");
  s.tanh_l0 = mode == "tanh";
  s.tanh_scale = opt_number(o, "tanhScale", 4.0);
  s.loss_scale = opt_number(o, "lossScale", 1.0);
  s.apply_b_dec = opt_bool(o, "applyBDecToInput", true);
  if (!info[0].IsObject()) fail(ErrorKind::Value, "weights must be an object of tensors");
  Tensor encW = opt_tensor(info[0].As<Napi::Object>(), "encW");
  if (!encW.defined() || encW.ndim() != 2) fail(ErrorKind::Shape, "weights encW must be a [num_latents, d_in] tensor");
  const int64_t M = encW.dim(0), D = encW.dim(1);
  StepTensors w = read_set(info[0], "weights", s.jumprelu, M, D, false);
  StepTensors g = read_set(info[1], "grads", s.jumprelu, M, D, true);
  Tensor fired = read_did_fire(o, M);
  Tensor x = arg_tensor(info, 2, "x");
  expect_dtype(x, DType::F32, "x");
  if (x.ndim() != 2 || x.dim(1) != D) fail(ErrorKind::Shape, "x must be [tokens, " + std::to_string(D) + "], got " + shape_str(x.shape));
  auto out = std::make_shared<ThresholdStepLosses>();
  return run_async(
      info.Env(),
      [w, g, x, s, M, D, out, fired] {
        ThresholdStepWeights wv{D, M, w.encW.data<float>(), w.encB.data<float>(), s.jumprelu ? w.logThreshold.data<float>() : nullptr,
                                w.W_dec.data<float>(), w.b_dec.data<float>()};
        ThresholdStepGrads gv{g.encW.data<float>(), g.encB.data<float>(), s.jumprelu ? g.logThreshold.data<float>() : nullptr,
                              g.W_dec.data<float>(), g.b_dec.data<float>(), fired.defined() ? fired.data<int32_t>() : nullptr};
        *out = threshold_step(wv, s, x.dim(0), x.data<float>(), gv);
      },
      [out](Napi::Env env) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        r.Set("mse", out->mse);
        r.Set("sparsity", out->sparsity);
        r.Set("loss", out->loss);
        return r;
      });
}

Napi::Value batchtopk_step_js(const Napi::CallbackInfo& info) {
  Napi::Object o = arg_object(info, 3, "options");
  BatchTopKSpec s;
  s.k = opt_number(o, "k", 0);
  s.loss_scale = opt_number(o, "lossScale", 1.0);
  s.per_row = opt_bool(o, "perRow", false);
  s.apply_b_dec = opt_bool(o, "applyBDecToInput", true);
  Napi::Value wv = o.Get("widths");
  if (!wv.IsUndefined() && !wv.IsNull()) {
    if (!wv.IsArray()) fail(ErrorKind::Value, "batchTopKStep: widths must be an array of integers");
    Napi::Array a = wv.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Value e = a.Get(i);
      if (!e.IsNumber()) fail(ErrorKind::Value, "batchTopKStep: widths must be an array of integers");
      s.widths.push_back(e.As<Napi::Number>().Int64Value());
    }
  }
  if (!info[0].IsObject()) fail(ErrorKind::Value, "weights must be an object of tensors");
  Tensor encW = opt_tensor(info[0].As<Napi::Object>(), "encW");
  if (!encW.defined() || encW.ndim() != 2) fail(ErrorKind::Shape, "weights encW must be a [num_latents, d_in] tensor");
  const int64_t M = encW.dim(0), D = encW.dim(1);
  StepTensors w = read_set(info[0], "weights", false, M, D, false);
  StepTensors g = read_set(info[1], "grads", false, M, D, true);
  Tensor fired = read_did_fire(o, M);
  Tensor x = arg_tensor(info, 2, "x");
  expect_dtype(x, DType::F32, "x");
  if (x.ndim() != 2 || x.dim(1) != D) fail(ErrorKind::Shape, "x must be [tokens, " + std::to_string(D) + "], got " + shape_str(x.shape));
  auto out = std::make_shared<BatchTopKLosses>();
  return run_async(
      info.Env(),
      [w, g, x, s, M, D, out, fired] {
        ThresholdStepWeights wv{D, M, w.encW.data<float>(), w.encB.data<float>(), nullptr, w.W_dec.data<float>(), w.b_dec.data<float>()};
        ThresholdStepGrads gv{g.encW.data<float>(), g.encB.data<float>(), nullptr, g.W_dec.data<float>(), g.b_dec.data<float>(),
                              fired.defined() ? fired.data<int32_t>() : nullptr};
        *out = batchtopk_step(wv, s, x.dim(0), x.data<float>(), gv);
      },
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
  export_fn(env, exports, "thresholdStep", threshold_step_js);
  export_fn(env, exports, "batchTopKStep", batchtopk_step_js);
}

}  // namespace
SPX_REGISTER(threshold_step_ops, init);
}  // namespace sparsify
