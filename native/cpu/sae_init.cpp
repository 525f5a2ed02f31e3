// The trainer's first-batch bias init (sparsify's Trainer before the first step):
// b_dec = mean_0(y ?? x); transcoders also b_enc = -(mean_0(x) W_enc^T). Means in float64.
// CUDA coders run this on their host copy (packages/core/src/backend/cuda-coder-state.ts).
#include <vector>

#include "core/parallel.h"
#include "cpu/sae.h"

namespace sparsify {
namespace {
std::vector<double> column_means(int64_t N, int64_t D, const float* a) {
  std::vector<double> mu(size_t(D), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t d = 0; d < D; ++d) mu[size_t(d)] += a[n * D + d];
  for (auto& v : mu) v /= double(N);
  return mu;
}
}  // namespace

void sae_init_biases(const SaeWeights& w, bool transcode, int64_t Nx, const float* x, int64_t Ny, const float* y, float* b_enc,
                     float* b_dec) {
  const int64_t M = w.M, D = w.D;
  if (transcode) {
    std::vector<double> mx = column_means(Nx, D, x);
    std::vector<float> mxf(mx.begin(), mx.end());
    const float* W = w.W_enc;
    parallel_for(M, 256, [&](int64_t m0, int64_t m1) {
      for (int64_t m = m0; m < m1; ++m) {
        double acc = 0;
        for (int64_t d = 0; d < D; ++d) acc += double(mxf[size_t(d)]) * W[m * D + d];
        b_enc[m] = -float(acc);
      }
    });
  }
  std::vector<double> my = y ? column_means(Ny, D, y) : column_means(Nx, D, x);
  for (int64_t d = 0; d < D; ++d) b_dec[d] = float(my[size_t(d)]);
}

}  // namespace sparsify
