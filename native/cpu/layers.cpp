#include "cpu/layers.h"

#include <algorithm>
#include <cmath>

#include "cpu/gemm.h"
#include "core/parallel.h"
#include "cpu/vec_math.h"

namespace sparsify {
namespace model {

void norm_rows(Norm kind, const float* x, float* y, int64_t rows, int64_t width, const std::vector<float>& w,
               const std::vector<float>& b, double eps) {
  parallel_for(rows, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * width;
      float* yr = y + r * width;
      if (kind == Norm::LayerNorm) {
        double sum, unused, var;
        row_moments(xr, width, 0.0, &sum, &unused);
        double mean = sum / double(width);
        row_moments(xr, width, mean, &unused, &var);
        var /= double(width);
        float rstd = float(1.0 / std::sqrt(var + eps));
        float mf = float(mean);
        layer_norm_apply(xr, yr, width, mf, rstd, w.data(), b.empty() ? nullptr : b.data());
      } else {
        double unused, ss;
        row_moments(xr, width, 0.0, &unused, &ss);
        float r_ = float(1.0 / std::sqrt(float(ss / double(width)) + eps));
        rms_norm_apply(xr, yr, width, r_, w.data(), kind != Norm::RMS);
      }
    }
  });
}

void activation(Act act, const float* x, float* y, int64_t n) {
  parallel_for(n, 4096, [&](int64_t i0, int64_t i1) {
    switch (act) {
      case Act::GeluTanh:
        model::gelu_tanh(x + i0, y + i0, i1 - i0);
        break;
      case Act::GeluErf:
        model::gelu_erf(x + i0, y + i0, i1 - i0);
        break;
      case Act::GeluFast:  // 0.5 x (1 + tanh(0.7978845608 x (1 + 0.044715 x^2))): the same function
        model::gelu_tanh(x + i0, y + i0, i1 - i0);
        break;
      case Act::QuickGelu:
        for (int64_t i = i0; i < i1; ++i) y[i] = x[i] / (1.f + std::exp(-1.702f * x[i]));
        break;
      case Act::Silu:
        model::silu(x + i0, y + i0, i1 - i0);
        break;
      case Act::Relu:
        for (int64_t i = i0; i < i1; ++i) y[i] = x[i] > 0.f ? x[i] : 0.f;
        break;
    }
  });
}

void linear(const float* x, int64_t M, int64_t K, const Tensor& W, bool conv1d, const std::vector<float>& bias, float* y,
            int64_t N) {
  GemmB b{W.raw(), W.dtype, W.dim(1), !conv1d};
  gemm(M, N, K, x, K, b, y, N, false, bias.empty() ? nullptr : bias.data());
}

Rope rope_tables(const Spec& s, int64_t T) {
  Rope r;
  r.half = s.rotary_dim / 2;
  r.cos.resize(size_t(T * r.half));
  r.sin.resize(size_t(T * r.half));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < r.half; ++j) {
      float angle = s.inv_freq[size_t(j)] * float(t);  // f32 product, as transformers computes it
      r.cos[size_t(t * r.half + j)] = float(std::cos(double(angle))) * s.rope_attention_scaling;
      r.sin[size_t(t * r.half + j)] = float(std::sin(double(angle))) * s.rope_attention_scaling;
    }
  return r;
}

void apply_rope(const Rope& rope, float* buf, int64_t B, int64_t T, int64_t stride, int64_t offset, int64_t heads,
                int64_t head_stride) {
  const int64_t half = rope.half;
  if (half == 0) return;
  parallel_for(B * T, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t t = r % T;
      const float* c = rope.cos.data() + t * half;
      const float* s = rope.sin.data() + t * half;
      for (int64_t h = 0; h < heads; ++h) {
        float* p = buf + r * stride + offset + h * head_stride;
        for (int64_t j = 0; j < half; ++j) {
          float x1 = p[j], x2 = p[j + half];
          p[j] = x1 * c[j] + (-x2) * s[j];
          p[j + half] = x2 * c[j] + x1 * s[j];
        }
      }
    }
  });
}


}  // namespace model
}  // namespace sparsify
