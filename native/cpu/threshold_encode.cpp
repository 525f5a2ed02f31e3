// Fused threshold encoder (ReLU / JumpReLU / gated), see threshold_encode.h.
#include "cpu/threshold_encode.h"

#include <algorithm>

#include "core/parallel.h"
#include "cpu/gemm.h"

namespace sparsify {

ThresholdCsr threshold_encode(const ThresholdWeights& w, int64_t N, const float* xin) {
  const int64_t M = w.M, D = w.D;
  ThresholdCsr out;
  out.row_ptr.assign(size_t(N + 1), 0);
  if (N == 0) return out;
  // Same tiling as the TopK encoder: ~256K weights per latent tile, row blocks per thread.
  const int64_t T = std::min<int64_t>(M, std::max<int64_t>(512, std::min<int64_t>(1024, (262144 / std::max<int64_t>(D, 1)) / 64 * 64)));
  const int64_t R = std::max<int64_t>(16, std::min<int64_t>(512, (N + 2 * num_threads() - 1) / (2 * num_threads())));
  const int64_t nblocks = (N + R - 1) / R;
  std::vector<std::vector<float>> bvals(static_cast<size_t>(nblocks));
  std::vector<std::vector<int32_t>> bidx(static_cast<size_t>(nblocks));
  std::vector<std::vector<int64_t>> bcount(static_cast<size_t>(nblocks));
  parallel_for(nblocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> C(static_cast<size_t>(R * T));
    std::vector<std::vector<std::pair<float, int32_t>>> rows(static_cast<size_t>(R));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * R, rn = std::min(R, N - r0);
      for (auto& r : rows) r.clear();
      for (int64_t m0 = 0; m0 < M; m0 += T) {
        const int64_t tn = std::min(T, M - m0);
        GemmB gb{w.W_enc + m0 * D, DType::F32, D, true};
        gemm(rn, tn, D, xin + r0 * D, D, gb, C.data(), T, false, nullptr);
        for (int64_t rr = 0; rr < rn; ++rr) {
          const float* c = C.data() + rr * T;
          auto& row = rows[size_t(rr)];
          for (int64_t t = 0; t < tn; ++t) {
            const int64_t m = m0 + t;
            const float g = c[t];
            const float th = w.gate_threshold ? w.gate_threshold[m] : 0.f;
            if (!(g + w.gate_bias[m] > th)) continue;
            const float v = w.value_scale ? g * w.value_scale[m] + w.value_bias[m] : g + w.value_bias[m];
            if (v > 0.f) row.emplace_back(v, int32_t(m));
          }
        }
      }
      auto& vs = bvals[size_t(b)];
      auto& is = bidx[size_t(b)];
      auto& cs = bcount[size_t(b)];
      for (int64_t rr = 0; rr < rn; ++rr) {
        cs.push_back(int64_t(rows[size_t(rr)].size()));
        for (const auto& [v, m] : rows[size_t(rr)]) {
          vs.push_back(v);
          is.push_back(m);
        }
      }
    }
  });
  int64_t n = 0;
  for (int64_t b = 0; b < nblocks; ++b)
    for (int64_t c : bcount[size_t(b)]) {
      out.row_ptr[size_t(n + 1)] = out.row_ptr[size_t(n)] + c;
      ++n;
    }
  out.vals.reserve(size_t(out.row_ptr[size_t(N)]));
  out.idx.reserve(out.vals.capacity());
  for (int64_t b = 0; b < nblocks; ++b) {
    out.vals.insert(out.vals.end(), bvals[size_t(b)].begin(), bvals[size_t(b)].end());
    out.idx.insert(out.idx.end(), bidx[size_t(b)].begin(), bidx[size_t(b)].end());
  }
  return out;
}

}  // namespace sparsify
