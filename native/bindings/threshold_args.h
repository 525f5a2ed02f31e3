// Argument readers and result writers shared by the threshold-kind bindings of both builds: the encoder
// (bindings/cpu/threshold_encode.cpp, bindings/cuda/threshold_encode.cpp) and the relu / jumprelu
// and batchTopK training steps (bindings/cpu/threshold_step.cpp, bindings/cuda/threshold_step.cpp).
// Each binding calls them in its own order and keeps only its job launch.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/napi_util.h"
#include "cpu/batchtopk_step.h"
#include "cpu/threshold_step.h"

namespace sparsify {

// What differs between the builds: the CUDA bindings also take device tensors (only a host tensor
// can be memory-mapped from a file, so only host tensors get the read-only check) and their
// kernels index latents with int32.
enum class BindingSide { Cpu, Cuda };

inline bool is_read_only(const Tensor& t, BindingSide side) {
  const bool host = side == BindingSide::Cpu || t.device() == Device::CPU;
  return host && t.storage && !t.storage->owned_heap;
}

inline void expect_f32_vector(const Tensor& t, int64_t n, const char* name) {
  expect_dtype(t, DType::F32, name);
  expect_shape(t, {n}, name);
}

// x at argument `index`: f32 [tokens, D].
inline Tensor read_tokens_x(const Napi::CallbackInfo& info, size_t index, int64_t D) {
  Tensor x = arg_tensor(info, index, "x");
  expect_dtype(x, DType::F32, "x");
  if (x.ndim() != 2 || x.dim(1) != D)
    fail(ErrorKind::Shape, "x must be [tokens, " + std::to_string(D) + "], got " + shape_str(x.shape));
  return x;
}

// ---- encoder: thresholdEncode(w, x, b_dec|null) / cudaThresholdEncode ----

// w = { encW [M,D], gateBias [M], gateThreshold? [M], valueScale? [M], valueBias [M] }, x, b_dec? [D].
struct ThresholdEncodeTensors {
  Tensor encW, gateBias, gateThreshold, valueScale, valueBias, x, bDec;
};

inline ThresholdEncodeTensors read_threshold_encode_tensors(const Napi::CallbackInfo& info, BindingSide side) {
  if (!info[0].IsObject()) fail(ErrorKind::Value, "weights must be an object of tensors");
  Napi::Object o = info[0].As<Napi::Object>();
  ThresholdEncodeTensors a;
  a.encW = opt_tensor(o, "encW");
  a.gateBias = opt_tensor(o, "gateBias");
  a.gateThreshold = opt_tensor(o, "gateThreshold");
  a.valueScale = opt_tensor(o, "valueScale");
  a.valueBias = opt_tensor(o, "valueBias");
  if (!a.encW.defined() || !a.gateBias.defined() || !a.valueBias.defined())
    fail(ErrorKind::Value, "threshold encoder weights need encW, gateBias and valueBias");
  expect_dtype(a.encW, DType::F32, "W_enc");
  expect_ndim(a.encW, 2, "W_enc");
  const int64_t M = a.encW.dim(0), D = a.encW.dim(1);
  if (side == BindingSide::Cuda && M >= (int64_t(1) << 31)) fail(ErrorKind::Shape, "W_enc has >= 2^31 latents");
  expect_f32_vector(a.gateBias, M, "gate bias");
  expect_f32_vector(a.valueBias, M, "value bias");
  if (a.gateThreshold.defined()) expect_f32_vector(a.gateThreshold, M, "threshold");
  if (a.valueScale.defined()) expect_f32_vector(a.valueScale, M, "value scale");
  a.x = read_tokens_x(info, 1, D);
  a.bDec = arg_optional_tensor(info, 2, "b_dec");
  if (a.bDec.defined()) expect_f32_vector(a.bDec, D, "b_dec");
  return a;
}

// ---- training steps: (w, grads, x, options) of thresholdStep / batchTopKStep and their CUDA twins ----

// The options of thresholdStep: {kind: 'relu'|'jumprelu', l1Coefficient, lpNorm, l0Coefficient, bandwidth,
// sparsityLoss: 'step'|'tanh', tanhScale, lossScale, applyBDecToInput, preActCoefficient, dead?}.
inline ThresholdStepSpec read_threshold_step_spec(Napi::Object o) {
  const std::string kind = opt_string(o, "kind", "");
  if (kind != "relu" && kind != "jumprelu") fail(ErrorKind::Value, "thresholdStep: kind must be 'relu' or 'jumprelu', got '" + kind + "'");
  ThresholdStepSpec s;
  s.jumprelu = kind == "jumprelu";
  s.l1_coefficient = opt_number(o, "l1Coefficient", 0);
  s.lp_norm = opt_number(o, "lpNorm", 1.0);
  if (!(std::isfinite(s.lp_norm) && s.lp_norm >= 1))
    fail(ErrorKind::Value, "thresholdStep: lpNorm (lp_norm) must be a finite number >= 1, got " + std::to_string(s.lp_norm));
  s.l0_coefficient = opt_number(o, "l0Coefficient", 0);
  s.pre_act_coefficient = opt_number(o, "preActCoefficient", 0);
  s.bandwidth = opt_number(o, "bandwidth", 0.05);
  const std::string mode = opt_string(o, "sparsityLoss", "step");
  if (mode != "step" && mode != "tanh") fail(ErrorKind::Value, "thresholdStep: sparsityLoss must be 'step' or 'tanh', got '" + mode + "'");
  s.tanh_l0 = mode == "tanh";
  s.tanh_scale = opt_number(o, "tanhScale", 4.0);
  s.loss_scale = opt_number(o, "lossScale", 1.0);
  s.apply_b_dec = opt_bool(o, "applyBDecToInput", true);
  return s;
}

// The options of batchTopKStep: {k, lossScale, perRow, applyBDecToInput, widths?: number[], auxCoefficient, dead?}.
inline BatchTopKSpec read_batchtopk_spec(Napi::Object o) {
  BatchTopKSpec s;
  s.k = opt_number(o, "k", 0);
  s.loss_scale = opt_number(o, "lossScale", 1.0);
  s.per_row = opt_bool(o, "perRow", false);
  s.aux_coefficient = opt_number(o, "auxCoefficient", 0);
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
  return s;
}

// {M, D} from the weights' encW (argument 0).
inline std::pair<int64_t, int64_t> read_step_latent_shape(const Napi::CallbackInfo& info, BindingSide side) {
  if (!info[0].IsObject()) fail(ErrorKind::Value, "weights must be an object of tensors");
  Tensor encW = opt_tensor(info[0].As<Napi::Object>(), "encW");
  if (!encW.defined() || encW.ndim() != 2) fail(ErrorKind::Shape, "weights encW must be a [num_latents, d_in] tensor");
  if (side == BindingSide::Cuda && encW.dim(0) >= (int64_t(1) << 31))
    fail(ErrorKind::Shape, "weights encW has >= 2^31 latents");
  return {encW.dim(0), encW.dim(1)};
}

// A weights or grads set: { encW [M,D], encB [M], logThreshold? [M] (jumprelu), W_dec [M,D], b_dec [D] } (f32).
struct StepTensors {
  Tensor encW, encB, logThreshold, W_dec, b_dec;
};

// `writable`: the grads set, which the step adds into.
inline StepTensors read_step_tensors(Napi::Value v, const char* what, bool jumprelu, int64_t M, int64_t D, bool writable,
                                     BindingSide side) {
  if (!v.IsObject()) fail(ErrorKind::Value, std::string(what) + " must be an object of tensors");
  Napi::Object o = v.As<Napi::Object>();
  StepTensors t{opt_tensor(o, "encW"), opt_tensor(o, "encB"), opt_tensor(o, "logThreshold"), opt_tensor(o, "W_dec"), opt_tensor(o, "b_dec")};
  auto check = [&](const Tensor& x, const std::vector<int64_t>& shape, const std::string& name) {
    if (!x.defined()) fail(ErrorKind::Value, std::string(what) + " needs " + name);
    expect_dtype(x, DType::F32, (std::string(what) + " " + name).c_str());
    expect_shape(x, shape, (std::string(what) + " " + name).c_str());
    if (writable && is_read_only(x, side))
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
inline Tensor read_step_did_fire(const Napi::Object& o, int64_t M, BindingSide side) {
  Tensor t = opt_tensor(o, "didFire");
  if (!t.defined()) return t;
  expect_dtype(t, DType::I32, "didFire");
  expect_shape(t, {M}, "didFire");
  if (is_read_only(t, side)) fail(ErrorKind::Value, "didFire is read-only (memory-mapped from a file)");
  return t;
}

// The optional int32 [M] dead mask of the options (nonzero = dead: AuxK, JumpReLU's pre-act loss).
inline Tensor read_step_dead(const Napi::Object& o, int64_t M) {
  Tensor t = opt_tensor(o, "dead");
  if (!t.defined()) return t;
  expect_dtype(t, DType::I32, "dead");
  expect_shape(t, {M}, "dead");
  return t;
}

// The step results as JS objects (L: the CPU or CUDA loss struct, which share field names).
template <class L>
Napi::Object threshold_step_losses_js(Napi::Env env, const L& l) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("mse", l.mse);
  r.Set("sparsity", l.sparsity);
  r.Set("preAct", l.pre_act);
  r.Set("loss", l.loss);
  return r;
}

template <class L>
Napi::Object batchtopk_step_losses_js(Napi::Env env, const L& l) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("mse", l.mse);
  r.Set("inner", l.inner);
  r.Set("aux", l.aux);
  r.Set("loss", l.loss);
  r.Set("minKept", l.min_kept);
  r.Set("kept", double(l.kept));
  return r;
}

}  // namespace sparsify
