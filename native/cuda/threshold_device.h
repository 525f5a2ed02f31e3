// The threshold coder kinds on the device (threshold_encode.cu): the host entry point of the
// inference encode and the device-pointer building blocks the training steps reuse. Shapes and
// dtypes are checked by the binding (native/bindings/cuda/threshold_encode.cpp) first.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/tensor.h"

namespace sparsify {
namespace cuda {

// Device pointers of the rule in native/cpu/threshold_encode.h (f32; threshold / scale may be null).
struct ThresholdDev {
  int64_t D = 0, M = 0;
  const float* W_enc = nullptr;
  const float* gate_bias = nullptr;
  const float* gate_threshold = nullptr;
  const float* value_scale = nullptr;
  const float* value_bias = nullptr;
};

// xin = x - b_dec (b_dec may be null); throws a Value error naming the first non-finite x.
void encoder_input_dev(const float* x, const float* b_dec, int64_t N, int64_t D, float* xin, cudaStream_t s);
// counts[n] = kept latents of row n (never stores the N x M pre-activations).
void threshold_count_dev(const float* xin, const ThresholdDev& w, int64_t N, int* counts, cudaStream_t s);
// Writes row n's kept (value, latent) pairs, in latent order, from row_ptr[n] (CSR) or n * width.
void threshold_write_dev(const float* xin, const ThresholdDev& w, int64_t N, const int64_t* row_ptr, int64_t width,
                         float* vals, int* idx, cudaStream_t s);
// row_ptr[0] = 0, row_ptr[n + 1] = row_ptr[n] + counts[n].
void row_ptr_dev(const int* counts, int64_t N, int64_t* row_ptr, cudaStream_t s);

// Same arguments and result as the CPU binding's thresholdEncode (f32 tensors, host or device).
struct ThresholdEncodeArgs {
  Tensor w_enc, gate_bias, gate_threshold, value_scale, value_bias, x, b_dec;
};
// acts [N, W] f32, indices [N, W] int32, counts [N] int32; W = max(1, max count), padding slots
// hold value 0 at latent 0. On the device when x is a device tensor, else on the host.
struct ThresholdEncodeResult {
  Tensor acts, indices, counts;
};
ThresholdEncodeResult threshold_encode(const ThresholdEncodeArgs& a);

}  // namespace cuda
}  // namespace sparsify
