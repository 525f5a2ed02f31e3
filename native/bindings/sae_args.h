// Argument readers shared by the CPU sparse-coder bindings (bindings/cpu/sae.cpp, the stateless
// kernels, and bindings/cpu/sae_state.cpp, the resident state).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/napi_util.h"

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

}  // namespace sparsify
