#include "cpu/vec_math.h"

#include <algorithm>
#include <cmath>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
// GCC 12 flags the _mm512_undefined_* inside its own AVX-512 intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define SPX_X86 1
#define SPX_AVX512 __attribute__((target("avx512f,avx2,fma")))
// No a*b+c contraction into FMA: these must round like the scalar loops they stand in for.
#define SPX_AVX512_EXACT __attribute__((target("avx512f,avx2,fma"), optimize("fp-contract=off")))
#endif
#include "cpu/isa.h"
#ifdef SPX_X86
#endif

namespace sparsify {
namespace model {

namespace {

inline float exp_scalar(float x) { return std::exp(x); }

#ifdef SPX_X86
__attribute__((target("avx2,fma"))) inline __m256 exp256(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-88.3762626647949f);
  x = _mm256_max_ps(_mm256_min_ps(x, hi), lo);
  __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
  fx = _mm256_floor_ps(fx);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 z = _mm256_mul_ps(x, x);
  __m256 y = _mm256_set1_ps(1.9875691500E-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
  y = _mm256_fmadd_ps(y, z, x);
  y = _mm256_add_ps(y, _mm256_set1_ps(1.f));
  __m256i e = _mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127));
  __m256 pow2 = _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
  return _mm256_mul_ps(y, pow2);
}

__attribute__((target("avx2,fma"))) float exp_shifted_sum_avx2(float* x, int64_t n, float shift) {
  __m256 acc = _mm256_setzero_ps(), s = _mm256_set1_ps(shift);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
    _mm256_storeu_ps(x + i, v);
    acc = _mm256_add_ps(acc, v);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  float sum = 0.f;
  for (float l : lanes) sum += l;
  for (; i < n; ++i) {
    x[i] = exp_scalar(x[i] - shift);
    sum += x[i];
  }
  return sum;
}

// y = x / (1 + exp(-u)) with u = g(x) computed by `arg`.
template <bool kGelu>
__attribute__((target("avx2,fma"))) void sigmoid_gate_avx2(const float* x, float* y, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256 u = v;
    if (kGelu) {  // u = 2 * sqrt(2/pi) * (x + 0.044715 x^3)
      __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
      u = _mm256_mul_ps(_mm256_set1_ps(1.5957691216057308f), _mm256_fmadd_ps(x3, _mm256_set1_ps(0.044715f), v));
    }
    __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), u));
    _mm256_storeu_ps(y + i, _mm256_div_ps(v, _mm256_add_ps(one, e)));
  }
  for (; i < n; ++i) {
    float v = x[i];
    float u = kGelu ? 1.5957691216057308f * (v + 0.044715f * v * v * v) : v;
    y[i] = v / (1.f + std::exp(-u));
  }
}

__attribute__((target("avx2,fma"))) void row_moments_avx2(const float* x, int64_t n, double center, double* sum,
                                                           double* sumsq) {
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd(), q0 = _mm256_setzero_pd(), q1 = _mm256_setzero_pd();
  const __m256d c = _mm256_set1_pd(center);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256d a = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), c);
    __m256d b = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), c);
    s0 = _mm256_add_pd(s0, a);
    s1 = _mm256_add_pd(s1, b);
    q0 = _mm256_fmadd_pd(a, a, q0);
    q1 = _mm256_fmadd_pd(b, b, q1);
  }
  alignas(32) double ls[4], lq[4];
  _mm256_store_pd(ls, _mm256_add_pd(s0, s1));
  _mm256_store_pd(lq, _mm256_add_pd(q0, q1));
  double S = ls[0] + ls[1] + ls[2] + ls[3], Q = lq[0] + lq[1] + lq[2] + lq[3];
  for (; i < n; ++i) {
    double d = double(x[i]) - center;
    S += d;
    Q += d * d;
  }
  *sum = S;
  *sumsq = Q;
}

__attribute__((target("avx2,fma"))) void gelu_erf_avx2(const float* x, float* y, int64_t n) {
  const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.f), sign = _mm256_set1_ps(-0.f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256 z = _mm256_mul_ps(v, _mm256_set1_ps(0.7071067811865476f));
    __m256 az = _mm256_andnot_ps(sign, z);
    __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), az, one));
    __m256 p = _mm256_set1_ps(1.061405429f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
    p = _mm256_mul_ps(p, t);
    __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(az, az)));
    __m256 erf_abs = _mm256_fnmadd_ps(p, e, one);
    __m256 erf = _mm256_or_ps(erf_abs, _mm256_and_ps(sign, z));
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, erf)));
  }
  for (; i < n; ++i) y[i] = 0.5f * x[i] * (1.f + std::erf(x[i] * 0.7071067811865476f));
}

__attribute__((target("avx2,fma"))) void scale_softcap_avx2(float* x, int64_t n, float scale, float cap) {
  const __m256 sc = _mm256_set1_ps(scale), one = _mm256_set1_ps(1.f), two = _mm256_set1_ps(2.f),
               sign = _mm256_set1_ps(-0.f), c = _mm256_set1_ps(cap), inv = _mm256_set1_ps(2.f / cap);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), sc);
    if (cap > 0.f) {  // tanh(u) = sign(u) (1 - 2 / (exp(2|u|) + 1)), u = v / cap
      __m256 a = _mm256_andnot_ps(sign, v);
      __m256 e = exp256(_mm256_mul_ps(a, inv));
      __m256 t = _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(e, one)));
      v = _mm256_mul_ps(c, _mm256_or_ps(t, _mm256_and_ps(sign, v)));
    }
    _mm256_storeu_ps(x + i, v);
  }
  for (; i < n; ++i) {
    float v = x[i] * scale;
    x[i] = cap > 0.f ? std::tanh(v / cap) * cap : v;
  }
}

// ---- AVX-512 twins. Element-wise ones use the AVX2 formulas lane for lane (and hand the last
// n % 16 values to the AVX2 code), so they are bitwise equal to the AVX2 path; the reductions
// (sums, moments, max) regroup the additions, so they agree with it to rounding.
SPX_AVX512 inline __m512 exp512(__m512 x) {
  const __m512 hi = _mm512_set1_ps(88.3762626647949f), lo = _mm512_set1_ps(-88.3762626647949f);
  x = _mm512_max_ps(_mm512_min_ps(x, hi), lo);
  __m512 fx = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f));
  fx = _mm512_roundscale_ps(fx, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
  __m512 z = _mm512_mul_ps(x, x);
  __m512 y = _mm512_set1_ps(1.9875691500E-4f);
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507E-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073E-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894E-2f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459E-1f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201E-1f));
  y = _mm512_fmadd_ps(y, z, x);
  y = _mm512_add_ps(y, _mm512_set1_ps(1.f));
  __m512i e = _mm512_add_epi32(_mm512_cvttps_epi32(fx), _mm512_set1_epi32(127));
  __m512 pow2 = _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
  return _mm512_mul_ps(y, pow2);
}

SPX_AVX512 inline __m512 sign_bits512(__m512 v) {
  return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(int(0x80000000u))));
}
SPX_AVX512 inline __m512 abs512(__m512 v) {
  return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff)));
}
SPX_AVX512 inline __m512 or512(__m512 a, __m512 b) {
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
}

SPX_AVX512 float exp_shifted_sum_avx512(float* x, int64_t n, float shift) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps(), s = _mm512_set1_ps(shift);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 a = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), s));
    __m512 b = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), s));
    _mm512_storeu_ps(x + i, a);
    _mm512_storeu_ps(x + i + 16, b);
    acc0 = _mm512_add_ps(acc0, a);
    acc1 = _mm512_add_ps(acc1, b);
  }
  if (i < n) {  // masked tail: the vector exp for the last values too (lanes off the end stay 0)
    for (; i < n; i += 16) {
      const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
      __m512 a = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s));
      _mm512_mask_storeu_ps(x + i, m, a);
      acc0 = _mm512_mask_add_ps(acc0, m, acc0, a);
    }
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

template <bool kGelu>
SPX_AVX512 void sigmoid_gate_avx512(const float* x, float* y, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.f);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(x + i);
    __m512 u = v;
    if (kGelu) {
      __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(v, v), v);
      u = _mm512_mul_ps(_mm512_set1_ps(1.5957691216057308f), _mm512_fmadd_ps(x3, _mm512_set1_ps(0.044715f), v));
    }
    __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), u));
    _mm512_storeu_ps(y + i, _mm512_div_ps(v, _mm512_add_ps(one, e)));
  }
  if (i < n) sigmoid_gate_avx2<kGelu>(x + i, y + i, n - i);
}

SPX_AVX512 void gelu_erf_avx512(const float* x, float* y, int64_t n) {
  const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.f);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(x + i);
    __m512 z = _mm512_mul_ps(v, _mm512_set1_ps(0.7071067811865476f));
    __m512 az = abs512(z);
    __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), az, one));
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
    p = _mm512_mul_ps(p, t);
    __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(az, az)));
    __m512 erf_abs = _mm512_fnmadd_ps(p, e, one);
    __m512 erf = or512(erf_abs, sign_bits512(z));
    _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, erf)));
  }
  if (i < n) gelu_erf_avx2(x + i, y + i, n - i);
}

SPX_AVX512 void scale_softcap_avx512(float* x, int64_t n, float scale, float cap) {
  const __m512 sc = _mm512_set1_ps(scale), one = _mm512_set1_ps(1.f), two = _mm512_set1_ps(2.f),
               c = _mm512_set1_ps(cap), inv = _mm512_set1_ps(2.f / cap);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + i), sc);
    if (cap > 0.f) {
      __m512 e = exp512(_mm512_mul_ps(abs512(v), inv));
      __m512 t = _mm512_sub_ps(one, _mm512_div_ps(two, _mm512_add_ps(e, one)));
      v = _mm512_mul_ps(c, or512(t, sign_bits512(v)));
    }
    _mm512_storeu_ps(x + i, v);
  }
  if (i < n) scale_softcap_avx2(x + i, n - i, scale, cap);
}

SPX_AVX512 void row_moments_avx512(const float* x, int64_t n, double center, double* sum,
                                                             double* sumsq) {
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd(), q0 = _mm512_setzero_pd(), q1 = _mm512_setzero_pd();
  const __m512d c = _mm512_set1_pd(center);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(x + i);
    __m512d a = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), c);
    __m512d b = _mm512_sub_pd(
        _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))), c);
    s0 = _mm512_add_pd(s0, a);
    s1 = _mm512_add_pd(s1, b);
    q0 = _mm512_fmadd_pd(a, a, q0);
    q1 = _mm512_fmadd_pd(b, b, q1);
  }
  double S = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)), Q = _mm512_reduce_add_pd(_mm512_add_pd(q0, q1));
  for (; i < n; ++i) {
    double d = double(x[i]) - center;
    S += d;
    Q += d * d;
  }
  *sum = S;
  *sumsq = Q;
}

SPX_AVX512 float row_max_avx512(const float* x, int64_t n) {
  __m512 m = _mm512_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + i));
  float mx = _mm512_reduce_max_ps(m);
  for (; i < n; ++i) mx = std::max(mx, x[i]);
  return mx;
}

// Norm application and residual adds: the scalar loops' op order, one op per intrinsic and no
// contraction, so they are bitwise equal to the scalar code.
SPX_AVX512_EXACT void layer_norm_apply_avx512(const float* x, float* y, int64_t n, float mean, float rstd, const float* w,
                                              const float* b) {
  const __m512 m = _mm512_set1_ps(mean), r = _mm512_set1_ps(rstd);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), m), r), _mm512_loadu_ps(w + i));
    _mm512_storeu_ps(y + i, _mm512_add_ps(v, b ? _mm512_loadu_ps(b + i) : _mm512_setzero_ps()));
  }
  for (; i < n; ++i) y[i] = (x[i] - mean) * rstd * w[i] + (b ? b[i] : 0.f);
}

SPX_AVX512_EXACT void rms_norm_apply_avx512(const float* x, float* y, int64_t n, float r, const float* w, bool one_plus) {
  const __m512 rv = _mm512_set1_ps(r), one = _mm512_set1_ps(1.f);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 xr = _mm512_mul_ps(_mm512_loadu_ps(x + i), rv), wv = _mm512_loadu_ps(w + i);
    _mm512_storeu_ps(y + i, one_plus ? _mm512_mul_ps(xr, _mm512_add_ps(one, wv)) : _mm512_mul_ps(wv, xr));
  }
  for (; i < n; ++i) y[i] = one_plus ? (x[i] * r) * (1.f + w[i]) : w[i] * (x[i] * r);
}

SPX_AVX512 void add_inplace_avx512(float* x, const float* a, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_add_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(a + i)));
  for (; i < n; ++i) x[i] = x[i] + a[i];
}

SPX_AVX512 void mul_inplace_avx512(float* y, const float* a, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] = a[i] * y[i];
}

SPX_AVX512 void scale_inplace_avx512(float* x, int64_t n, float s) {
  const __m512 sv = _mm512_set1_ps(s);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), sv));
  for (; i < n; ++i) x[i] *= s;
}

// The variant pinned by SPARSIFY_GEMM / gemm_force_kernels (isa.h), so tests reach every one.
bool use_avx512() { return active_isa() == Isa::Avx512; }
bool has_avx2() { return active_isa() != Isa::Portable; }
#endif

template <bool kGelu>
void sigmoid_gate_portable(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i];
    float u = kGelu ? 1.5957691216057308f * (v + 0.044715f * v * v * v) : v;
    y[i] = v / (1.f + std::exp(-u));
  }
}

}  // namespace

float exp_shifted_sum(float* x, int64_t n, float shift) {
#ifdef SPX_X86
  if (use_avx512()) return exp_shifted_sum_avx512(x, n, shift);
  if (has_avx2()) return exp_shifted_sum_avx2(x, n, shift);
#endif
  float sum = 0.f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = exp_scalar(x[i] - shift);
    sum += x[i];
  }
  return sum;
}

void row_moments(const float* x, int64_t n, double center, double* sum, double* sumsq) {
#ifdef SPX_X86
  if (use_avx512()) return row_moments_avx512(x, n, center, sum, sumsq);
  if (has_avx2()) return row_moments_avx2(x, n, center, sum, sumsq);
#endif
  double S = 0, Q = 0;
  for (int64_t i = 0; i < n; ++i) {
    double d = double(x[i]) - center;
    S += d;
    Q += d * d;
  }
  *sum = S;
  *sumsq = Q;
}

void silu(const float* x, float* y, int64_t n) {
#ifdef SPX_X86
  if (use_avx512()) return sigmoid_gate_avx512<false>(x, y, n);
  if (has_avx2()) return sigmoid_gate_avx2<false>(x, y, n);
#endif
  sigmoid_gate_portable<false>(x, y, n);
}

void gelu_tanh(const float* x, float* y, int64_t n) {
#ifdef SPX_X86
  if (use_avx512()) return sigmoid_gate_avx512<true>(x, y, n);
  if (has_avx2()) return sigmoid_gate_avx2<true>(x, y, n);
#endif
  sigmoid_gate_portable<true>(x, y, n);
}

void scale_softcap(float* x, int64_t n, float scale, float cap) {
#ifdef SPX_X86
  if (use_avx512()) return scale_softcap_avx512(x, n, scale, cap);
  if (has_avx2()) return scale_softcap_avx2(x, n, scale, cap);
#endif
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i] * scale;
    x[i] = cap > 0.f ? std::tanh(v / cap) * cap : v;
  }
}

void gelu_erf(const float* x, float* y, int64_t n) {
#ifdef SPX_X86
  if (use_avx512()) return gelu_erf_avx512(x, y, n);
  if (has_avx2()) return gelu_erf_avx2(x, y, n);
#endif
  for (int64_t i = 0; i < n; ++i) y[i] = 0.5f * x[i] * (1.f + std::erf(x[i] * 0.7071067811865476f));
}

float row_max(const float* x, int64_t n) {
#ifdef SPX_X86
  if (use_avx512()) return row_max_avx512(x, n);
#endif
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  return mx;
}

void scale_inplace(float* x, int64_t n, float s) {
#ifdef SPX_X86
  if (use_avx512()) return scale_inplace_avx512(x, n, s);
#endif
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

void add_inplace(float* x, const float* a, int64_t n) {
#ifdef SPX_X86
  if (use_avx512()) return add_inplace_avx512(x, a, n);
#endif
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] + a[i];
}

void mul_inplace(float* y, const float* a, int64_t n) {
#ifdef SPX_X86
  if (use_avx512()) return mul_inplace_avx512(y, a, n);
#endif
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * y[i];
}

void layer_norm_apply(const float* x, float* y, int64_t n, float mean, float rstd, const float* w, const float* b) {
#ifdef SPX_X86
  if (use_avx512()) return layer_norm_apply_avx512(x, y, n, mean, rstd, w, b);
#endif
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * rstd * w[i] + (b ? b[i] : 0.f);
}

void rms_norm_apply(const float* x, float* y, int64_t n, float r, const float* w, bool one_plus) {
#ifdef SPX_X86
  if (use_avx512()) return rms_norm_apply_avx512(x, y, n, r, w, one_plus);
#endif
  if (one_plus)
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * r) * (1.f + w[i]);
  else
    for (int64_t i = 0; i < n; ++i) y[i] = w[i] * (x[i] * r);
}

}  // namespace model
}  // namespace sparsify
