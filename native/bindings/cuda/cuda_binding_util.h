// Argument helpers shared by the N-API bindings of the CUDA build (native/bindings/cuda/*.cpp).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "core/napi_util.h"

namespace sparsify {
namespace cuda_binding {

using TensorList = std::vector<std::pair<const char*, Tensor>>;
inline Napi::Value wrap_all(Napi::Env env, const TensorList& items) {
  Napi::Object o = Napi::Object::New(env);
  for (auto& [name, t] : items)
    if (t.defined()) o.Set(name, TensorHandle::Wrap(env, t));
  return o;
}

inline DType compute_dtype(Napi::Object opts) {
  std::string c = opt_string(opts, "computeDtype", "bfloat16");
  if (c == "bfloat16") return DType::BF16;
  if (c == "float16") return DType::F16;
  fail(ErrorKind::DType, "computeDtype must be 'bfloat16' or 'float16', got '" + c + "'");
}

inline Napi::Object opts_at(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && info[i].IsObject() ? info[i].As<Napi::Object>() : Napi::Object::New(info.Env());
}

inline void expect_rows(const Tensor& t, int64_t rows, const char* name, const char* what) {
  if (t.dim(0) != rows)
    fail(ErrorKind::Shape, std::string(name) + " is " + shape_str(t.shape) + " but must have " + std::to_string(rows) +
                               " rows (" + what + ")");
}

// Checks that every index is in [0, M) (device kernels index W rows with them).
inline void expect_indices(const Tensor& idx, int64_t M, const char* name) { expect_indices_below(idx, M, name, "a latent index"); }

inline void expect_vec(const Tensor& t, int64_t n, const char* name) {
  expect_float(t, name);
  expect_shape(t, {n}, name);
}

inline void check_sparse_pair(const Tensor& acts, const Tensor& idx, const char* an, const char* in) {
  expect_float(acts, an);
  expect_ndim(acts, 2, an);
  expect_shape(idx, acts.shape, in);
  if (acts.numel() >= (int64_t(1) << 31)) fail(ErrorKind::Value, std::string(an) + " has >= 2^31 elements");
}

}  // namespace cuda_binding
}  // namespace sparsify
