// Global gradient-norm clipping over a coder's gradient buffers (see grad_clip.h). The state's
// optimizer step (sae_state.cpp) runs it over every parameter's gradient before the update.
#include "cpu/grad_clip.h"

#include <algorithm>
#include <vector>

#include "core/parallel.h"

namespace sparsify {

namespace {
constexpr int64_t kBlock = 1 << 14;  // fixed blocks: the sum does not depend on the thread count
}

double grad_sum_squares(int64_t n, const float* g) {
  if (n <= 0) return 0.0;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> part(size_t(blocks), 0.0);
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t lo = b * kBlock, hi = std::min(n, lo + kBlock);
      double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      int64_t i = lo;
      for (; i + 4 <= hi; i += 4) {
        s0 += double(g[i]) * g[i];
        s1 += double(g[i + 1]) * g[i + 1];
        s2 += double(g[i + 2]) * g[i + 2];
        s3 += double(g[i + 3]) * g[i + 3];
      }
      for (; i < hi; ++i) s0 += double(g[i]) * g[i];
      part[size_t(b)] = (s0 + s1) + (s2 + s3);
    }
  });
  double t = 0;
  for (double v : part) t += v;
  return t;
}

double grad_clip_coefficient(double norm, double max_norm) { return std::min(1.0, max_norm / (norm + 1e-6)); }

void grad_scale(int64_t n, float* g, float coef) {
  parallel_for(n, kBlock, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) g[i] *= coef;
  });
}

}  // namespace sparsify
