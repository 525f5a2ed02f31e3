// Optimizer kernels. The element-wise ones follow torch's op order in f32 (lerp with torch's
// small-weight / large-weight branches), so results track PyTorch to rounding.
#include <algorithm>
#include <cmath>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
// GCC 12 flags the _mm512_undefined_* inside its own AVX-512 intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "core/parallel.h"
#include "cpu/gemm.h"
#include "cpu/isa.h"
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

#if defined(__x86_64__)
// AVX-512 twins of the element-wise loops: the same op order, one op per intrinsic and no FMA
// contraction, so every lane rounds like the scalar loop (bitwise equal; sqrt and div are exact in
// both). The last n % 16 elements go through the scalar loop.
#define SPX_OPT_AVX512 __attribute__((target("avx512f"), optimize("fp-contract=off")))

SPX_OPT_AVX512 inline __m512 lerp16(__m512 a, __m512 b, __m512 w, __m512 one_minus_w, bool small) {
  const __m512 d = _mm512_sub_ps(b, a);
  return small ? _mm512_add_ps(a, _mm512_mul_ps(w, d)) : _mm512_sub_ps(b, _mm512_mul_ps(d, one_minus_w));
}
// sign_of(g) = float(g > 0) - float(g < 0): NaN -> 0.
SPX_OPT_AVX512 inline __m512 sign16(__m512 g) {
  const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.f);
  return _mm512_sub_ps(_mm512_maskz_mov_ps(_mm512_cmp_ps_mask(g, zero, _CMP_GT_OQ), one),
                       _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(g, zero, _CMP_LT_OQ), one));
}

template <bool kSmallCkp>
SPX_OPT_AVX512 int64_t signum_avx512(float* p, float* z, float* g, int64_t i0, int64_t i1, float lr, float ckp1,
                                     float w_yx, float w_y) {
  const __m512 nlr = _mm512_set1_ps(-lr), c = _mm512_set1_ps(ckp1), omc = _mm512_set1_ps(1.f - ckp1),
               wyx = _mm512_set1_ps(w_yx), wy = _mm512_set1_ps(w_y), zero = _mm512_setzero_ps();
  int64_t i = i0;
  for (; i + 16 <= i1; i += 16) {
    const __m512 pi = _mm512_loadu_ps(p + i), zi = _mm512_loadu_ps(z + i);
    const __m512 x = lerp16(pi, zi, wyx, zero, true);
    const __m512 s = _mm512_add_ps(zi, x);
    __m512 pz = _mm512_sub_ps(s, x);
    const __m512 zx = _mm512_sub_ps(s, pz);
    pz = _mm512_add_ps(pz, _mm512_mul_ps(nlr, sign16(_mm512_loadu_ps(g + i))));
    const __m512 s2 = _mm512_add_ps(zx, pz);
    const __m512 px = _mm512_sub_ps(s2, pz);
    const __m512 zn = _mm512_sub_ps(s2, px);
    const __m512 x2 = lerp16(px, zn, c, omc, kSmallCkp);
    _mm512_storeu_ps(p + i, lerp16(x2, zn, wy, zero, true));
    _mm512_storeu_ps(z + i, zn);
    _mm512_storeu_ps(g + i, zero);
  }
  return i;
}

template <bool kSmall>
SPX_OPT_AVX512 int64_t adam_avx512(float* p, float* g, float* m, float* v, int64_t i0, int64_t i1, float w1, float b2,
                                   float w2, float step_size, float bc2_sqrt, float eps) {
  const __m512 vw1 = _mm512_set1_ps(w1), omw1 = _mm512_set1_ps(1.f - w1), vb2 = _mm512_set1_ps(b2),
               vw2 = _mm512_set1_ps(w2), nss = _mm512_set1_ps(-step_size), bc = _mm512_set1_ps(bc2_sqrt),
               ve = _mm512_set1_ps(eps);
  int64_t i = i0;
  for (; i + 16 <= i1; i += 16) {
    const __m512 gi = _mm512_loadu_ps(g + i);
    const __m512 mi = lerp16(_mm512_loadu_ps(m + i), gi, vw1, omw1, kSmall);
    const __m512 vi = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(v + i), vb2), _mm512_mul_ps(vw2, _mm512_mul_ps(gi, gi)));
    const __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), bc), ve);
    _mm512_storeu_ps(p + i, _mm512_add_ps(_mm512_loadu_ps(p + i), _mm512_mul_ps(nss, _mm512_div_ps(mi, denom))));
    _mm512_storeu_ps(m + i, mi);
    _mm512_storeu_ps(v + i, vi);
    _mm512_storeu_ps(g + i, _mm512_setzero_ps());
  }
  return i;
}

// Muon's momentum: s0 = lerp(s0, g, wb); g = nesterov ? lerp(g, s0, wg) : s0; p *= decay first.
SPX_OPT_AVX512 int64_t muon_pre_avx512(float* p, float* s0, float* g, int64_t i0, int64_t i1, bool decay_on, float decay,
                                       bool momentum_on, float wb, float wg, bool nesterov) {
  const __m512 dv = _mm512_set1_ps(decay), vwb = _mm512_set1_ps(wb), omwb = _mm512_set1_ps(1.f - wb),
               vwg = _mm512_set1_ps(wg), omwg = _mm512_set1_ps(1.f - wg);
  const bool small_b = std::fabs(wb) < 0.5f, small_g = std::fabs(wg) < 0.5f;
  int64_t i = i0;
  for (; i + 16 <= i1; i += 16) {
    if (decay_on) _mm512_storeu_ps(p + i, _mm512_mul_ps(_mm512_loadu_ps(p + i), dv));
    if (momentum_on) {
      const __m512 gi = _mm512_loadu_ps(g + i);
      const __m512 si = lerp16(_mm512_loadu_ps(s0 + i), gi, vwb, omwb, small_b);
      _mm512_storeu_ps(s0 + i, si);
      _mm512_storeu_ps(g + i, nesterov ? lerp16(gi, si, vwg, omwg, small_g) : si);
    }
  }
  return i;
}

// p = p + alpha * O; g = 0.
SPX_OPT_AVX512 int64_t muon_apply_avx512(float* p, float* g, const float* O, int64_t i0, int64_t i1, float alpha) {
  const __m512 a = _mm512_set1_ps(alpha);
  int64_t i = i0;
  for (; i + 16 <= i1; i += 16) {
    _mm512_storeu_ps(p + i, _mm512_add_ps(_mm512_loadu_ps(p + i), _mm512_mul_ps(a, _mm512_loadu_ps(O + i))));
    _mm512_storeu_ps(g + i, _mm512_setzero_ps());
  }
  return i;
}
#endif

// First index the scalar loop still has to do: i0, or past the AVX-512 part on that variant. A
// macro, not a function, so that the AVX-512 call is not compiled where those twins do not exist.
#if defined(__x86_64__)
#define SIMD_PREFIX(i0, avx512_call) (active_isa() == Isa::Avx512 ? (avx512_call) : (i0))
#else
#define SIMD_PREFIX(i0, avx512_call) (i0)
#endif

template <bool kSmallCkp>
void signum_loop(float* __restrict p, float* __restrict z, float* __restrict g, int64_t i0, int64_t i1, float lr,
                 float ckp1, float w_yx, float w_y) {
  const float one_minus_ckp1 = 1.f - ckp1;
  i0 = SIMD_PREFIX(i0, signum_avx512<kSmallCkp>(p, z, g, i0, i1, lr, ckp1, w_yx, w_y));
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
  i0 = SIMD_PREFIX(i0, adam_avx512<kSmall>(p, g, m, v, i0, i1, w1, b2, w2, step_size, bc2_sqrt, eps));
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
  i0 = SIMD_PREFIX(
      i0, muon_pre_avx512(u.p, u.s0, u.g, i0, i1, u.weight_decay > 0, decay, u.momentum > 0, wb, wg, u.nesterov));
  for (int64_t i = i0; i < i1; ++i) {
    if (u.weight_decay > 0) u.p[i] *= decay;
    if (u.momentum > 0) {
      u.s0[i] = lerp(u.s0[i], u.g[i], wb);
      u.g[i] = u.nesterov ? lerp(u.g[i], u.s0[i], wg) : u.s0[i];
    }
  }
}

}  // namespace

void project_grad(int64_t rows, int64_t cols, const float* p, float* g) {
  OptUpdate u;
  u.p = const_cast<float*>(p);  // project_rows only reads the parameter
  u.g = g;
  u.rows = rows;
  u.cols = cols;
  parallel_for(rows, std::max<int64_t>(1, (int64_t(1) << 14) / std::max<int64_t>(cols, 1)),
               [&](int64_t r0, int64_t r1) { project_rows(u, r0, r1); });
}

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
      const int64_t i0 = SIMD_PREFIX(r0 * cols, muon_apply_avx512(u.p, u.g, O.data(), r0 * cols, r1 * cols, alpha));
      for (int64_t i = i0; i < r1 * cols; ++i) {
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
