// Causal self-attention of the CPU forward (declared in layers.h): per (batch, head), blocks of query
// rows against the visible keys with the shared GEMM, softmax in f32. CUDA twin: native/cuda/attention.cu;
// float64 reference: native/ref/attention_reference.cpp.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/gemm.h"
#include "cpu/layers.h"
#include "cpu/vec_math.h"
#include "core/parallel.h"

namespace sparsify {
namespace model {

void attention(const HeadLayout& q, const HeadLayout& k, const HeadLayout& v, float* out, int64_t B, int64_t T,
               int64_t heads, int64_t kv_heads, int64_t head_dim, float scale, float softcap, int64_t window) {
  // Per (batch, head): scores = Q K^T and out = P V as GEMMs over blocks of query rows, each
  // block only against the keys it can see (causal), so the work is ~half of the full T x T.
  // The GEMMs run inline on the worker that owns the (batch, head) pair.
  const int64_t group = heads / kv_heads, out_stride = heads * head_dim;
  const int64_t RB = 64;
  parallel_for(B * heads, 1, [&](int64_t p0, int64_t p1) {
    std::vector<float> score(static_cast<size_t>(RB * T));
    for (int64_t p = p0; p < p1; ++p) {
      int64_t b = p / heads, h = p % heads, kvh = h / group;
      const float* qb = q.base + b * T * q.stride + q.offset + h * q.head_stride;
      const float* kb = k.base + b * T * k.stride + k.offset + kvh * k.head_stride;
      const float* vb = v.base + b * T * v.stride + v.offset + kvh * v.head_stride;
      float* ob = out + b * T * out_stride + h * head_dim;
      for (int64_t t0 = 0; t0 < T; t0 += RB) {
        int64_t rows = std::min(RB, T - t0), keys = t0 + rows;
        int64_t k0 = window > 0 ? std::max<int64_t>(0, t0 - window + 1) : 0;  // first key any row sees
        int64_t nk = keys - k0;
        gemm(rows, nk, head_dim, qb + t0 * q.stride, q.stride, GemmB{kb + k0 * k.stride, DType::F32, k.stride, true},
             score.data(), nk);
        for (int64_t r = 0; r < rows; ++r) {
          int64_t t = t0 + r;
          int64_t lo = (window > 0 ? std::max<int64_t>(0, t - window + 1) : 0) - k0, hi = t - k0;  // visible [lo, hi]
          float* sr = score.data() + r * nk;
          scale_softcap(sr + lo, hi - lo + 1, scale, softcap);
          const float mx = row_max(sr + lo, hi - lo + 1);
          const float sum = exp_shifted_sum(sr + lo, hi - lo + 1, mx);
          std::fill(sr, sr + lo, 0.f);
          scale_inplace(sr + lo, hi - lo + 1, 1.f / sum);
          std::fill(sr + hi + 1, sr + nk, 0.f);
        }
        gemm(rows, head_dim, nk, score.data(), nk, GemmB{vb + k0 * v.stride, DType::F32, v.stride, false},
             ob + t0 * out_stride, out_stride);
      }
    }
  });
}

}  // namespace model
}  // namespace sparsify
