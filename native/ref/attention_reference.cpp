// Plain causal attention with double accumulation: the reference the model tests compare the
// blocked-GEMM attention (cpu/layers.cpp) against, over shapes the fixtures do not reach.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/layers.h"

namespace sparsify {
namespace model {

void attention_reference(const HeadLayout& q, const HeadLayout& k, const HeadLayout& v, float* out, int64_t B, int64_t T,
                         int64_t heads, int64_t kv_heads, int64_t head_dim, float scale, float softcap, int64_t window) {
  const int64_t group = heads / kv_heads, out_stride = heads * head_dim;
  std::vector<double> score(static_cast<size_t>(T)), acc(static_cast<size_t>(head_dim));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t t = 0; t < T; ++t) {
        int64_t kvh = h / group;
        const float* qr = q.base + (b * T + t) * q.stride + q.offset + h * q.head_stride;
        int64_t lo = window > 0 ? std::max<int64_t>(0, t - window + 1) : 0;
        double mx = -INFINITY;
        for (int64_t s = lo; s <= t; ++s) {
          const float* kr = k.base + (b * T + s) * k.stride + k.offset + kvh * k.head_stride;
          double d = 0;
          for (int64_t i = 0; i < head_dim; ++i) d += double(qr[i]) * kr[i];
          d *= scale;
          if (softcap > 0) d = std::tanh(d / softcap) * softcap;
          score[size_t(s)] = d;
          mx = std::max(mx, d);
        }
        double sum = 0;
        for (int64_t s = lo; s <= t; ++s) sum += (score[size_t(s)] = std::exp(score[size_t(s)] - mx));
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t s = lo; s <= t; ++s) {
          const float* vr = v.base + (b * T + s) * v.stride + v.offset + kvh * v.head_stride;
          for (int64_t i = 0; i < head_dim; ++i) acc[size_t(i)] += score[size_t(s)] / sum * vr[i];
        }
        float* o = out + (b * T + t) * out_stride + h * head_dim;
        for (int64_t i = 0; i < head_dim; ++i) o[i] = float(acc[size_t(i)]);
      }
}

}  // namespace model
}  // namespace sparsify
