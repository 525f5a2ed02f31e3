// Optimizer kernels. The element-wise ones follow torch's op order in f32 (lerp with torch's
// small-weight / large-weight branches), so results track PyTorch to rounding.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "cpu/gemm.h"
#include "cpu/optim.h"

namespace sparsify {
namespace {

inline float lerp(float a, float b, float w) {
  return std::fabs(w) < 0.5f ? a + w * (b - a) : b - (b - a) * (1.f - w);
}
inline float sign(float v) { return v > 0.f ? 1.f : (v < 0.f ? -1.f : (v == v ? 0.f : v)); }

}  // namespace

void lerp_inplace(int64_t n, float* p, const float* z, float weight) {
  parallel_for(n, 1 << 14, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) p[i] = lerp(p[i], z[i], weight);
  });
}

void newton_schulz(int64_t rows, int64_t cols, const float* g, int steps, float* out) {
  const float a = 3.4445f, b = -4.7750f, c = 2.0315f;
  const bool tr = rows > cols;
  const int64_t r = tr ? cols : rows, cc = tr ? rows : cols;  // X is [r, cc], r <= cc
  std::vector<float> X(size_t(r * cc));
  if (tr) {
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) X[size_t(j * cc + i)] = g[i * cols + j];
  } else {
    std::copy(g, g + rows * cols, X.begin());
  }
  double ss = 0;
  for (float v : X) ss += double(v) * v;
  const float inv = float(1.0 / (std::sqrt(ss) + 1e-7));
  for (float& v : X) v *= inv;
  std::vector<float> A(size_t(r * r)), AA(size_t(r * r)), T(size_t(r * cc));
  for (int it = 0; it < steps; ++it) {
    gemm(r, r, cc, X.data(), cc, GemmB{X.data(), DType::F32, cc, true}, A.data(), r);
    gemm(r, r, r, A.data(), r, GemmB{A.data(), DType::F32, r, false}, AA.data(), r);
    for (int64_t i = 0; i < r * r; ++i) A[size_t(i)] = b * A[size_t(i)] + c * AA[size_t(i)];
    gemm(r, cc, r, A.data(), r, GemmB{X.data(), DType::F32, cc, false}, T.data(), cc);
    for (int64_t i = 0; i < r * cc; ++i) X[size_t(i)] = a * X[size_t(i)] + T[size_t(i)];
  }
  if (tr) {
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) out[i * cols + j] = X[size_t(j * cc + i)];
  } else {
    std::copy(X.begin(), X.end(), out);
  }
}

namespace {

void project_rows(const OptUpdate& u, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* w = u.p + r * u.cols;
    float* g = u.g + r * u.cols;
    float c0 = 0.f, c1 = 0.f, c2 = 0.f, c3 = 0.f;
    int64_t d = 0;
    for (; d + 4 <= u.cols; d += 4) {
      c0 += g[d] * w[d];
      c1 += g[d + 1] * w[d + 1];
      c2 += g[d + 2] * w[d + 2];
      c3 += g[d + 3] * w[d + 3];
    }
    for (; d < u.cols; ++d) c0 += g[d] * w[d];
    const float c = (c0 + c1) + (c2 + c3);
    for (int64_t e = 0; e < u.cols; ++e) g[e] -= c * w[e];
  }
}

// torch's lerp with the branch chosen once per call (the weight is a scalar).
template <bool kSmall>
inline float lerp_w(float a, float b, float w, float one_minus_w) {
  return kSmall ? a + w * (b - a) : b - (b - a) * one_minus_w;
}
inline float sign_of(float v) { return float(v > 0.f) - float(v < 0.f); }

template <bool kSmallCkp>
void signum_loop(float* __restrict p, float* __restrict z, float* __restrict g, int64_t i0, int64_t i1, float lr,
                 float ckp1, float w_yx, float w_y) {
  const float one_minus_ckp1 = 1.f - ckp1;
  for (int64_t i = i0; i < i1; ++i) {
    const float x = lerp_w<true>(p[i], z[i], w_yx, 0.f);  // y -> x (|1 - 1/momentum| < 0.5)
    const float s = z[i] + x;                             // swap(z, p) by add/sub, as schedulefree does
    float pz = s - x;
    const float zx = s - pz;
    pz = pz + (-lr) * sign_of(g[i]);  // SignSGD on z
    const float s2 = zx + pz;         // swap back
    const float px = s2 - pz;
    const float zn = s2 - px;
    const float x2 = lerp_w<kSmallCkp>(px, zn, ckp1, one_minus_ckp1);
    p[i] = lerp_w<true>(x2, zn, w_y, 0.f);
    z[i] = zn;
    g[i] = 0.f;
  }
}

void signum_range(const OptUpdate& u, int64_t i0, int64_t i1) {
  const float lr = float(u.lr), ckp1 = float(u.ckp1);
  const float w_yx = float(1.0 - 1.0 / u.momentum);
  const float w_y = float(1.0 - u.momentum);
  // The y<->x lerps use torch's small-weight formula (torch's choice for momentum > 2/3; the two
  // formulas agree in exact arithmetic otherwise).
  if (std::fabs(ckp1) < 0.5f)
    signum_loop<true>(u.p, u.s0, u.g, i0, i1, lr, ckp1, w_yx, w_y);
  else
    signum_loop<false>(u.p, u.s0, u.g, i0, i1, lr, ckp1, w_yx, w_y);
}

template <bool kSmall>
void adam_loop(float* __restrict p, float* __restrict g, float* __restrict m, float* __restrict v, int64_t i0, int64_t i1,
               float w1, float b2, float w2, float step_size, float bc2_sqrt, float eps) {
  for (int64_t i = i0; i < i1; ++i) {
    const float mi = lerp_w<kSmall>(m[i], g[i], w1, 1.f - w1);  // exp_avg.lerp_(grad, 1 - beta1)
    const float vi = v[i] * b2 + w2 * (g[i] * g[i]);           // exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2)
    const float denom = std::sqrt(vi) / bc2_sqrt + eps;
    p[i] = p[i] + (-step_size) * (mi / denom);
    m[i] = mi;
    v[i] = vi;
    g[i] = 0.f;
  }
}

void adam_range(const OptUpdate& u, int64_t i0, int64_t i1) {
  const double bc1 = 1.0 - std::pow(u.beta1, double(u.step));
  const double bc2 = 1.0 - std::pow(u.beta2, double(u.step));
  const float step_size = float(u.lr / bc1);
  const float bc2_sqrt = float(std::sqrt(bc2));
  const float w1 = float(1.0 - u.beta1), b2 = float(u.beta2), w2 = float(1.0 - u.beta2), fe = float(u.eps);
  if (std::fabs(w1) < 0.5f)
    adam_loop<true>(u.p, u.g, u.s0, u.s1, i0, i1, w1, b2, w2, step_size, bc2_sqrt, fe);
  else
    adam_loop<false>(u.p, u.g, u.s0, u.s1, i0, i1, w1, b2, w2, step_size, bc2_sqrt, fe);
}

void muon_pre_range(const OptUpdate& u, int64_t i0, int64_t i1) {
  const float decay = float(1.0 - u.lr * u.weight_decay);
  const float wb = float(1.0 - u.momentum), wg = float(u.momentum);
  for (int64_t i = i0; i < i1; ++i) {
    if (u.weight_decay > 0) u.p[i] *= decay;
    if (u.momentum > 0) {
      u.s0[i] = lerp(u.s0[i], u.g[i], wb);
      u.g[i] = u.nesterov ? lerp(u.g[i], u.s0[i], wg) : u.s0[i];
    }
  }
}

}  // namespace

void optimizer_update(const OptUpdate& u) {
  const int64_t rows = u.rows, cols = u.cols, n = rows * cols;
  // Chunks of whole rows, ~16K elements each.
  const int64_t rows_per = std::max<int64_t>(1, (int64_t(1) << 14) / std::max<int64_t>(cols, 1));
  const int64_t nchunks = (rows + rows_per - 1) / rows_per;
  auto chunks = [&](auto&& fn) {
    parallel_for(nchunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t r0 = c * rows_per, r1 = std::min(rows, r0 + rows_per);
        fn(r0, r1);
      }
    });
  };
  if (u.kind == OptKind::Muon) {
    chunks([&](int64_t r0, int64_t r1) {
      if (u.project) project_rows(u, r0, r1);
      muon_pre_range(u, r0 * cols, r1 * cols);
    });
    std::vector<float> O(static_cast<size_t>(n));
    newton_schulz(rows, cols, u.g, u.ns_steps, O.data());
    const float alpha = float(-u.lr * 0.2 * std::sqrt(double(std::max(rows, cols))));
    chunks([&](int64_t r0, int64_t r1) {
      for (int64_t i = r0 * cols; i < r1 * cols; ++i) {
        u.p[i] = u.p[i] + alpha * O[size_t(i)];
        u.g[i] = 0.f;
      }
    });
    return;
  }
  chunks([&](int64_t r0, int64_t r1) {
    if (u.project) project_rows(u, r0, r1);
    if (u.kind == OptKind::Signum)
      signum_range(u, r0 * cols, r1 * cols);
    else
      adam_range(u, r0 * cols, r1 * cols);
  });
}

}  // namespace sparsify
