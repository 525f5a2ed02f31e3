// The SAELens kinds' start-up check (see self_test_kinds.h): threshold_encode.cu on a small random
// JumpReLU problem against a host loop in double. Latents within 1e-4 of their threshold may go
// either way (f32 summation order); any other difference in the kept set, a value off by more
// than 1e-4, or a wrong padding slot is reported.
#include "cuda/self_test_kinds.h"

#include <cmath>
#include <random>
#include <vector>

#include "cuda/threshold_device.h"

namespace sparsify {
namespace cuda {

std::string check_threshold_kinds() {
  const int64_t N = 40, D = 48, M = 70;
  std::mt19937 rng(20251202);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  auto rand = [&](std::vector<int64_t> shape, float scale, float shift) {
    Tensor t = Tensor::empty(shape, DType::F32);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng) * scale + shift;
    return t;
  };
  ThresholdEncodeArgs a;
  a.w_enc = rand({M, D}, 0.3f, 0.f);
  a.gate_bias = rand({M}, 0.3f, 0.f);
  a.value_bias = a.gate_bias;
  a.gate_threshold = rand({M}, 0.2f, 0.3f);
  a.x = rand({N, D}, 1.f, 0.f);
  ThresholdEncodeResult r = threshold_encode(a);
  const int64_t W = r.acts.dim(1);
  const float* acts = r.acts.data<float>();
  const int* idx = r.indices.data<int>();
  const int* counts = r.counts.data<int>();
  for (int64_t n = 0; n < N; ++n) {
    std::vector<double> want(static_cast<size_t>(M), NAN), margin(static_cast<size_t>(M));
    for (int64_t m = 0; m < M; ++m) {
      double g = 0;
      for (int64_t d = 0; d < D; ++d) g += double(a.x.data<float>()[n * D + d]) * a.w_enc.data<float>()[m * D + d];
      const double h = g + a.gate_bias.data<float>()[m], th = a.gate_threshold.data<float>()[m];
      if (h > th && h > 0) want[size_t(m)] = h;
      margin[size_t(m)] = std::min(std::fabs(h - th), std::fabs(h));
    }
    std::vector<bool> kept(size_t(M), false);
    for (int64_t j = 0; j < W; ++j) {
      const int m = idx[n * W + j];
      const float v = acts[n * W + j];
      if (j >= counts[n]) {
        if (m != 0 || v != 0.f) return "row " + std::to_string(n) + ": padding slot " + std::to_string(j) + " is not (0, 0)";
        continue;
      }
      if (m < 0 || m >= M || (j > 0 && m <= idx[n * W + j - 1]))
        return "row " + std::to_string(n) + ": latent " + std::to_string(m) + " at slot " + std::to_string(j) + " is out of order";
      kept[size_t(m)] = true;
      if (margin[size_t(m)] > 1e-4 && (std::isnan(want[size_t(m)]) || std::fabs(v - want[size_t(m)]) > 1e-4))
        return "row " + std::to_string(n) + ": latent " + std::to_string(m) + " = " + std::to_string(v) + ", expected " +
               (std::isnan(want[size_t(m)]) ? std::string("dropped") : std::to_string(want[size_t(m)]));
    }
    for (int64_t m = 0; m < M; ++m)
      if (!kept[size_t(m)] && !std::isnan(want[size_t(m)]) && margin[size_t(m)] > 1e-4)
        return "row " + std::to_string(n) + ": latent " + std::to_string(m) + " dropped, expected " + std::to_string(want[size_t(m)]);
  }
  return "";
}

}  // namespace cuda
}  // namespace sparsify
