#include "cpu/vec_math.h"

#include <cmath>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SPX_X86 1
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

bool has_avx2() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}
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
  if (has_avx2()) return sigmoid_gate_avx2<false>(x, y, n);
#endif
  sigmoid_gate_portable<false>(x, y, n);
}

void gelu_tanh(const float* x, float* y, int64_t n) {
#ifdef SPX_X86
  if (has_avx2()) return sigmoid_gate_avx2<true>(x, y, n);
#endif
  sigmoid_gate_portable<true>(x, y, n);
}

void scale_softcap(float* x, int64_t n, float scale, float cap) {
#ifdef SPX_X86
  if (has_avx2()) return scale_softcap_avx2(x, n, scale, cap);
#endif
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i] * scale;
    x[i] = cap > 0.f ? std::tanh(v / cap) * cap : v;
  }
}

void gelu_erf(const float* x, float* y, int64_t n) {
#ifdef SPX_X86
  if (has_avx2()) return gelu_erf_avx2(x, y, n);
#endif
  for (int64_t i = 0; i < n; ++i) y[i] = 0.5f * x[i] * (1.f + std::erf(x[i] * 0.7071067811865476f));
}

}  // namespace model
}  // namespace sparsify
