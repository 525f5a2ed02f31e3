// Threshold encoders (ReLU / JumpReLU / gated): every latent whose gate opens is kept, so rows
// have a variable number of non-zeros. One rule covers the three SAELens inference kinds, with
// g = x' W_enc[m]^T (no bias):
//   kept  iff  g + gate_bias[m] > gate_threshold[m]   and   v = g * value_scale[m] + value_bias[m] > 0
//   standard : gate_bias = value_bias = b_enc, threshold 0, scale 1        (ReLU)
//   jumprelu : gate_bias = value_bias = b_enc, threshold theta, scale 1    (ReLU(h) 1[h > theta])
//   gated    : gate_bias = b_gate, threshold 0, scale exp(r_mag), value_bias = b_mag
// Both comparisons are strict; NaN never passes.
#pragma once
#include <cstdint>
#include <vector>

namespace sparsify {

struct ThresholdWeights {
  int64_t D = 0, M = 0;
  const float* W_enc = nullptr;           // [M,D] (row = latent)
  const float* gate_bias = nullptr;       // [M]
  const float* gate_threshold = nullptr;  // [M] or null (0)
  const float* value_scale = nullptr;     // [M] or null (1)
  const float* value_bias = nullptr;      // [M]
};

// Kept latents of each row in CSR form: row n owns [row_ptr[n], row_ptr[n+1]) of vals / idx,
// in increasing latent order. The N x M pre-activations are never stored: tiles of latents go
// through the shared GEMM into a cache-sized buffer, as in the TopK encoder.
struct ThresholdCsr {
  std::vector<int64_t> row_ptr;
  std::vector<float> vals;
  std::vector<int32_t> idx;
};
ThresholdCsr threshold_encode(const ThresholdWeights& w, int64_t N, const float* xin);

// Float64 reference: dense [N,M] activations (xin in f32, every product and sum in double).
std::vector<double> threshold_encode_reference(const ThresholdWeights& w, int64_t N, const float* xin);

}  // namespace sparsify
