// Float64 reference of the threshold encoder: dense loops, no tiling, no selection state.
#include <cmath>

#include "cpu/threshold_encode.h"

namespace sparsify {

std::vector<double> threshold_encode_reference(const ThresholdWeights& w, int64_t N, const float* xin) {
  const int64_t M = w.M, D = w.D;
  std::vector<double> f(size_t(N * M), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m) {
      double g = 0;
      for (int64_t d = 0; d < D; ++d) g += double(xin[n * D + d]) * double(w.W_enc[m * D + d]);
      const double th = w.gate_threshold ? double(w.gate_threshold[m]) : 0.0;
      if (!(g + double(w.gate_bias[m]) > th)) continue;
      const double v = g * (w.value_scale ? double(w.value_scale[m]) : 1.0) + double(w.value_bias[m]);
      if (v > 0) f[size_t(n * M + m)] = v;
    }
  return f;
}

}  // namespace sparsify
