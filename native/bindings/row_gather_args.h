// The argument checks of trainGatherRows (bindings/cpu/train.cpp) and cudaGatherRows
// (bindings/cuda/train.cpp): x f32 [N,D], idx int32 [n] with every entry a row of x.
#pragma once
#include <string>

#include "core/napi_util.h"

namespace sparsify {

// `device_rule` runs between the dtype/shape checks and the index check (which reads idx on the host).
template <class DeviceRule>
void check_gather_args(const Tensor& x, const Tensor& idx, const char* what, DeviceRule device_rule) {
  expect_dtype(x, DType::F32, "x");
  expect_ndim(x, 2, "x");
  expect_dtype(idx, DType::I32, "idx");
  expect_ndim(idx, 1, "idx");
  device_rule();
  expect_indices_below(idx, x.dim(0), (std::string(what) + ": idx").c_str(), "a row of x");
}

}  // namespace sparsify
