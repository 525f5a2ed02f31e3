// Argument readers and results shared by the sparse-coder bindings (bindings/cpu/sae.cpp, the
// stateless kernels; bindings/cpu/sae_state.cpp and bindings/cuda/sae_state.cpp, the states).
#pragma once
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/napi_util.h"
#include "cpu/sae.h"

namespace sparsify {

// x or y of a coder step: a host f32 [tokens, D] tensor.
inline Tensor read_coder_input(Napi::Value v, int64_t D, const char* name) {
  Tensor t = value_to_tensor(v, name);
  expect_dtype(t, DType::F32, name);
  if (t.ndim() != 2 || t.dim(1) != D)
    fail(ErrorKind::Shape, std::string(name) + " must be [tokens, " + std::to_string(D) + "], got " + shape_str(t.shape));
  if (t.device() != Device::CPU) fail(ErrorKind::Device, std::string(name) + " must be a CPU tensor");
  return t;
}

// The encoder product's compute dtype ({computeDtype: 'f32' | 'bf16'}, default f32): true for bf16.
inline bool read_compute_bf16(Napi::Object o) {
  const std::string cd = opt_string(o, "computeDtype", "f32");
  if (cd != "f32" && cd != "bf16") fail(ErrorKind::Value, "computeDtype must be 'f32' or 'bf16', got '" + cd + "'");
  return cd == "bf16";
}

// A dead mask: Uint8Array, or a tensor (int32 / float32) of M entries; nonzero = dead.
inline std::shared_ptr<std::vector<uint8_t>> read_dead_mask(Napi::Value v, int64_t M) {
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  auto out = std::make_shared<std::vector<uint8_t>>(size_t(M));
  if (v.IsTypedArray()) {
    auto ta = v.As<Napi::TypedArray>();
    if (ta.TypedArrayType() != napi_uint8_array) fail(ErrorKind::DType, "deadMask must be a Uint8Array or a tensor");
    if (int64_t(ta.ElementLength()) != M)
      fail(ErrorKind::Shape, "deadMask has " + std::to_string(ta.ElementLength()) + " entries, expected num_latents=" +
                                 std::to_string(M));
    const uint8_t* src = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    for (int64_t m = 0; m < M; ++m) (*out)[size_t(m)] = src[m] ? 1 : 0;
    return out;
  }
  Tensor t = value_to_tensor(v, "deadMask");
  if (t.numel() != M || t.ndim() != 1)
    fail(ErrorKind::Shape, "deadMask must be [" + std::to_string(M) + "], got " + shape_str(t.shape));
  for (int64_t m = 0; m < M; ++m) (*out)[size_t(m)] = load_as_f32(t.raw(), t.dtype, m) != 0.f ? 1 : 0;
  return out;
}

// Dead-latent counters (num_tokens_since_fired) from JS: undefined (all 0) or a Float64Array of
// M finite counts >= 0, as the CPU and CUDA states' loadDeadLatents take them.
inline std::vector<double> read_dead_counts(Napi::Value v, int64_t M) {
  std::vector<double> counts;
  if (v.IsUndefined() || v.IsNull()) return counts;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    fail(ErrorKind::Value, "argument 'counts' must be a Float64Array");
  auto a = v.As<Napi::Float64Array>();
  counts.assign(a.Data(), a.Data() + a.ElementLength());
  if (int64_t(counts.size()) != M)
    fail(ErrorKind::Shape, "dead-latent counters have " + std::to_string(counts.size()) + " entries, expected num_latents=" +
                               std::to_string(M));
  for (double c : counts)
    if (!(c >= 0) || !std::isfinite(c)) fail(ErrorKind::Value, "dead-latent counters must be finite and >= 0");
  return counts;
}

// A CPU coder step's result: the losses, and the forward's outputs when they were asked for.
inline Napi::Object wrap_step_result(Napi::Env env, const SaeLosses& L, const Tensor& sae_out, const Tensor& acts,
                                     const Tensor& idx) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("fvu", L.fvu);
  r.Set("auxkLoss", L.auxk);
  r.Set("multiTopkFvu", L.multi_topk_fvu);
  r.Set("loss", L.loss);
  r.Set("totalVariance", L.total_variance);
  r.Set("numDead", double(L.num_dead));
  if (sae_out.defined()) {
    r.Set("saeOut", TensorHandle::Wrap(env, sae_out));
    r.Set("latentActs", TensorHandle::Wrap(env, acts));
    r.Set("latentIndices", TensorHandle::Wrap(env, idx));
  }
  return r;
}

}  // namespace sparsify
