// AVX2 + FMA (+ F16C) GEMM kernels. The binary targets baseline x86-64, so every function here
// carries a target attribute and gemm.cpp only calls them after checking the CPU at run time.
#include "cpu/gemm_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include <algorithm>

#define SPX_AVX2 __attribute__((target("avx2,fma,f16c")))
#define SPX_AVX2_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline

namespace sparsify {
namespace gemm_detail {
namespace {

// Register tile: 6 rows by 16 columns (one B panel).
constexpr int MR = 6;
constexpr int NR = 16;

// 8 consecutive elements of a float buffer of dtype T, widened to f32.
template <DType T>
SPX_AVX2_INLINE __m256 load8(const void* p, int64_t i) {
  if constexpr (T == DType::F32) {
    return _mm256_loadu_ps(static_cast<const float*>(p) + i);
  } else if constexpr (T == DType::BF16) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
    return _mm256_cvtph_ps(h);
  }
}

template <DType T>
SPX_AVX2_INLINE float load1(const void* p, int64_t i) {
  if constexpr (T == DType::F32) {
    return static_cast<const float*>(p)[i];
  } else if constexpr (T == DType::BF16) {
    return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
  } else {
    return _cvtsh_ss(static_cast<const uint16_t*>(p)[i]);
  }
}

SPX_AVX2_INLINE void transpose8(__m256& r0, __m256& r1, __m256& r2, __m256& r3, __m256& r4, __m256& r5, __m256& r6,
                                __m256& r7) {
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r0 = _mm256_permute2f128_ps(s0, s4, 0x20);
  r1 = _mm256_permute2f128_ps(s1, s5, 0x20);
  r2 = _mm256_permute2f128_ps(s2, s6, 0x20);
  r3 = _mm256_permute2f128_ps(s3, s7, 0x20);
  r4 = _mm256_permute2f128_ps(s0, s4, 0x31);
  r5 = _mm256_permute2f128_ps(s1, s5, 0x31);
  r6 = _mm256_permute2f128_ps(s2, s6, 0x31);
  r7 = _mm256_permute2f128_ps(s3, s7, 0x31);
}

SPX_AVX2_INLINE float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

SPX_AVX2_INLINE void put2(float* c, __m256 v0, __m256 v1, bool add) {
  if (add) {
    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(c));
    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(c + 8));
  }
  _mm256_storeu_ps(c, v0);
  _mm256_storeu_ps(c + 8, v1);
}

// ---- 6x16 micro-kernel: 12 accumulators, 2 B loads + 6 A broadcasts per k ----
SPX_AVX2 void micro(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, bool add, const float* bias) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int i = 0; i < MR; ++i) _mm_prefetch(reinterpret_cast<const char*>(C + i * ldc), _MM_HINT_T0);
#define SPX_STEP(k)                                                                  \
  {                                                                                  \
    __m256 b0 = _mm256_load_ps(Bp + (k) * NR), b1 = _mm256_load_ps(Bp + (k) * NR + 8); \
    __m256 a = _mm256_broadcast_ss(Ap + (k) * MR + 0);                               \
    c00 = _mm256_fmadd_ps(a, b0, c00);                                               \
    c01 = _mm256_fmadd_ps(a, b1, c01);                                               \
    a = _mm256_broadcast_ss(Ap + (k) * MR + 1);                                      \
    c10 = _mm256_fmadd_ps(a, b0, c10);                                               \
    c11 = _mm256_fmadd_ps(a, b1, c11);                                               \
    a = _mm256_broadcast_ss(Ap + (k) * MR + 2);                                      \
    c20 = _mm256_fmadd_ps(a, b0, c20);                                               \
    c21 = _mm256_fmadd_ps(a, b1, c21);                                               \
    a = _mm256_broadcast_ss(Ap + (k) * MR + 3);                                      \
    c30 = _mm256_fmadd_ps(a, b0, c30);                                               \
    c31 = _mm256_fmadd_ps(a, b1, c31);                                               \
    a = _mm256_broadcast_ss(Ap + (k) * MR + 4);                                      \
    c40 = _mm256_fmadd_ps(a, b0, c40);                                               \
    c41 = _mm256_fmadd_ps(a, b1, c41);                                               \
    a = _mm256_broadcast_ss(Ap + (k) * MR + 5);                                      \
    c50 = _mm256_fmadd_ps(a, b0, c50);                                               \
    c51 = _mm256_fmadd_ps(a, b1, c51);                                               \
  }
  int64_t k = 0;
  for (; k + 4 <= kc; k += 4) {
    _mm_prefetch(reinterpret_cast<const char*>(Bp + 8 * NR), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(Bp + 9 * NR), _MM_HINT_T0);
    SPX_STEP(0)
    SPX_STEP(1)
    SPX_STEP(2)
    SPX_STEP(3)
    Ap += 4 * MR;
    Bp += 4 * NR;
  }
  for (; k < kc; ++k) {
    SPX_STEP(0)
    Ap += MR;
    Bp += NR;
  }
#undef SPX_STEP
  if (bias) {
    __m256 bb0 = _mm256_loadu_ps(bias), bb1 = _mm256_loadu_ps(bias + 8);
    c00 = _mm256_add_ps(c00, bb0), c01 = _mm256_add_ps(c01, bb1);
    c10 = _mm256_add_ps(c10, bb0), c11 = _mm256_add_ps(c11, bb1);
    c20 = _mm256_add_ps(c20, bb0), c21 = _mm256_add_ps(c21, bb1);
    c30 = _mm256_add_ps(c30, bb0), c31 = _mm256_add_ps(c31, bb1);
    c40 = _mm256_add_ps(c40, bb0), c41 = _mm256_add_ps(c41, bb1);
    c50 = _mm256_add_ps(c50, bb0), c51 = _mm256_add_ps(c51, bb1);
  }
  put2(C, c00, c01, add);
  put2(C + ldc, c10, c11, add);
  put2(C + 2 * ldc, c20, c21, add);
  put2(C + 3 * ldc, c30, c31, add);
  put2(C + 4 * ldc, c40, c41, add);
  put2(C + 5 * ldc, c50, c51, add);
}

// ---- packing ----
SPX_AVX2 void pack_a(const float* A, int64_t lda, int64_t rows, int64_t kc, float* dst) {
  if (rows == MR) {
    const float* a0 = A;
    const float* a1 = A + lda;
    const float* a2 = A + 2 * lda;
    const float* a3 = A + 3 * lda;
    const float* a4 = A + 4 * lda;
    const float* a5 = A + 5 * lda;
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
      __m256 r0 = _mm256_loadu_ps(a0 + k), r1 = _mm256_loadu_ps(a1 + k), r2 = _mm256_loadu_ps(a2 + k);
      __m256 r3 = _mm256_loadu_ps(a3 + k), r4 = _mm256_loadu_ps(a4 + k), r5 = _mm256_loadu_ps(a5 + k);
      __m256 r6 = _mm256_setzero_ps(), r7 = _mm256_setzero_ps();
      transpose8(r0, r1, r2, r3, r4, r5, r6, r7);
      // Each store writes 8 floats of which 6 belong to column k+j; the next store (or the next
      // k block / panel, or the buffer slack) overwrites the 2 extra.
      float* d = dst + k * MR;
      _mm256_storeu_ps(d + 0 * MR, r0);
      _mm256_storeu_ps(d + 1 * MR, r1);
      _mm256_storeu_ps(d + 2 * MR, r2);
      _mm256_storeu_ps(d + 3 * MR, r3);
      _mm256_storeu_ps(d + 4 * MR, r4);
      _mm256_storeu_ps(d + 5 * MR, r5);
      _mm256_storeu_ps(d + 6 * MR, r6);
      _mm256_storeu_ps(d + 7 * MR, r7);
    }
    for (; k < kc; ++k) {
      float* d = dst + k * MR;
      d[0] = a0[k], d[1] = a1[k], d[2] = a2[k], d[3] = a3[k], d[4] = a4[k], d[5] = a5[k];
    }
    return;
  }
  for (int64_t k = 0; k < kc; ++k)
    for (int i = 0; i < MR; ++i) dst[k * MR + i] = i < rows ? A[i * lda + k] : 0.f;
}

// B stored [N,K]: a transpose of 16 rows; 8x8 register transposes for the full part.
template <DType T>
SPX_AVX2 void pack_b_trans(const GemmB& B, int64_t n0, int64_t cols, int64_t k0, int64_t kc, float* dst) {
  int64_t k = 0;
  if (cols == NR) {
    for (; k + 8 <= kc; k += 8) {
      for (int h = 0; h < 2; ++h) {
        int64_t base = (n0 + 8 * h) * B.ld + k0 + k;
        __m256 r0 = load8<T>(B.data, base), r1 = load8<T>(B.data, base + B.ld);
        __m256 r2 = load8<T>(B.data, base + 2 * B.ld), r3 = load8<T>(B.data, base + 3 * B.ld);
        __m256 r4 = load8<T>(B.data, base + 4 * B.ld), r5 = load8<T>(B.data, base + 5 * B.ld);
        __m256 r6 = load8<T>(B.data, base + 6 * B.ld), r7 = load8<T>(B.data, base + 7 * B.ld);
        transpose8(r0, r1, r2, r3, r4, r5, r6, r7);
        float* d = dst + k * NR + 8 * h;
        _mm256_store_ps(d + 0 * NR, r0);
        _mm256_store_ps(d + 1 * NR, r1);
        _mm256_store_ps(d + 2 * NR, r2);
        _mm256_store_ps(d + 3 * NR, r3);
        _mm256_store_ps(d + 4 * NR, r4);
        _mm256_store_ps(d + 5 * NR, r5);
        _mm256_store_ps(d + 6 * NR, r6);
        _mm256_store_ps(d + 7 * NR, r7);
      }
    }
  }
  for (; k < kc; ++k)
    for (int j = 0; j < NR; ++j)
      dst[k * NR + j] = j < cols ? load1<T>(B.data, (n0 + j) * B.ld + k0 + k) : 0.f;
}

// B stored [K,N]: 16 contiguous values per k.
template <DType T>
SPX_AVX2 void pack_b_plain(const GemmB& B, int64_t n0, int64_t cols, int64_t k0, int64_t kc, float* dst) {
  if (cols == NR) {
    for (int64_t k = 0; k < kc; ++k) {
      int64_t base = (k0 + k) * B.ld + n0;
      _mm256_store_ps(dst + k * NR, load8<T>(B.data, base));
      _mm256_store_ps(dst + k * NR + 8, load8<T>(B.data, base + 8));
    }
    return;
  }
  for (int64_t k = 0; k < kc; ++k)
    for (int j = 0; j < NR; ++j) dst[k * NR + j] = j < cols ? load1<T>(B.data, (k0 + k) * B.ld + n0 + j) : 0.f;
}

SPX_AVX2 void pack_b(const GemmB& B, int64_t n0, int64_t cols, int64_t k0, int64_t kc, float* dst) {
  switch (B.dtype) {
    case DType::BF16:
      return B.trans ? pack_b_trans<DType::BF16>(B, n0, cols, k0, kc, dst)
                     : pack_b_plain<DType::BF16>(B, n0, cols, k0, kc, dst);
    case DType::F16:
      return B.trans ? pack_b_trans<DType::F16>(B, n0, cols, k0, kc, dst)
                     : pack_b_plain<DType::F16>(B, n0, cols, k0, kc, dst);
    default:
      return B.trans ? pack_b_trans<DType::F32>(B, n0, cols, k0, kc, dst)
                     : pack_b_plain<DType::F32>(B, n0, cols, k0, kc, dst);
  }
}

// ---- small-M / small-N paths (no packing) ----
SPX_AVX2_INLINE void finish(float* c, float v, bool acc, const float* bias, int64_t n) {
  if (bias) v += bias[n];
  *c = acc ? *c + v : v;
}

// Up to 4 rows of A against 2 rows of B at a time: 8 accumulators, B read once for all rows.
// Rows of A past `rows` alias row 0 (computed and discarded) so the loop has one shape.
template <DType T>
SPX_AVX2 void dot_rows_t(int64_t rows, int64_t K, const float* A, int64_t lda, const GemmB& B, int64_t n0, int64_t n1,
                         float* C, int64_t ldc, bool acc, const float* bias) {
  const float* a[4];
  for (int i = 0; i < 4; ++i) a[i] = A + (i < rows ? i : 0) * lda;
  int64_t K8 = K & ~int64_t(7);
  int64_t n = n0;
  for (; n + 2 <= n1; n += 2) {
    int64_t b0 = n * B.ld, b1 = b0 + B.ld;
    __m256 s00 = _mm256_setzero_ps(), s01 = _mm256_setzero_ps(), s10 = _mm256_setzero_ps(), s11 = _mm256_setzero_ps();
    __m256 s20 = _mm256_setzero_ps(), s21 = _mm256_setzero_ps(), s30 = _mm256_setzero_ps(), s31 = _mm256_setzero_ps();
    for (int64_t k = 0; k < K8; k += 8) {
      __m256 x0 = load8<T>(B.data, b0 + k), x1 = load8<T>(B.data, b1 + k);
      __m256 v = _mm256_loadu_ps(a[0] + k);
      s00 = _mm256_fmadd_ps(v, x0, s00), s01 = _mm256_fmadd_ps(v, x1, s01);
      v = _mm256_loadu_ps(a[1] + k);
      s10 = _mm256_fmadd_ps(v, x0, s10), s11 = _mm256_fmadd_ps(v, x1, s11);
      v = _mm256_loadu_ps(a[2] + k);
      s20 = _mm256_fmadd_ps(v, x0, s20), s21 = _mm256_fmadd_ps(v, x1, s21);
      v = _mm256_loadu_ps(a[3] + k);
      s30 = _mm256_fmadd_ps(v, x0, s30), s31 = _mm256_fmadd_ps(v, x1, s31);
    }
    float r[4][2] = {{hsum(s00), hsum(s01)}, {hsum(s10), hsum(s11)}, {hsum(s20), hsum(s21)}, {hsum(s30), hsum(s31)}};
    for (int64_t k = K8; k < K; ++k) {
      float x0 = load1<T>(B.data, b0 + k), x1 = load1<T>(B.data, b1 + k);
      for (int i = 0; i < 4; ++i) r[i][0] += a[i][k] * x0, r[i][1] += a[i][k] * x1;
    }
    for (int64_t i = 0; i < rows; ++i) {
      finish(C + i * ldc + n, r[i][0], acc, bias, n);
      finish(C + i * ldc + n + 1, r[i][1], acc, bias, n + 1);
    }
  }
  for (; n < n1; ++n) {
    int64_t b0 = n * B.ld;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    for (int64_t k = 0; k < K8; k += 8) {
      __m256 x0 = load8<T>(B.data, b0 + k);
      s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a[0] + k), x0, s0);
      s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a[1] + k), x0, s1);
      s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a[2] + k), x0, s2);
      s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a[3] + k), x0, s3);
    }
    float r[4] = {hsum(s0), hsum(s1), hsum(s2), hsum(s3)};
    for (int64_t k = K8; k < K; ++k) {
      float x0 = load1<T>(B.data, b0 + k);
      for (int i = 0; i < 4; ++i) r[i] += a[i][k] * x0;
    }
    for (int64_t i = 0; i < rows; ++i) finish(C + i * ldc + n, r[i], acc, bias, n);
  }
}

// Up to 4 rows of A against a 16-column strip of B [K,N]: 8 accumulators, one pass over K.
template <DType T>
SPX_AVX2 void axpy_rows_t(int64_t rows, int64_t K, const float* A, int64_t lda, const GemmB& B, int64_t n0, int64_t n1,
                          float* C, int64_t ldc, bool acc, const float* bias) {
  const float* a[4];
  for (int i = 0; i < 4; ++i) a[i] = A + (i < rows ? i : 0) * lda;
  int64_t n = n0;
  for (; n + 16 <= n1; n += 16) {
    __m256 s00 = _mm256_setzero_ps(), s01 = _mm256_setzero_ps(), s10 = _mm256_setzero_ps(), s11 = _mm256_setzero_ps();
    __m256 s20 = _mm256_setzero_ps(), s21 = _mm256_setzero_ps(), s30 = _mm256_setzero_ps(), s31 = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; ++k) {
      int64_t base = k * B.ld + n;
      __m256 x0 = load8<T>(B.data, base), x1 = load8<T>(B.data, base + 8);
      __m256 v = _mm256_broadcast_ss(a[0] + k);
      s00 = _mm256_fmadd_ps(v, x0, s00), s01 = _mm256_fmadd_ps(v, x1, s01);
      v = _mm256_broadcast_ss(a[1] + k);
      s10 = _mm256_fmadd_ps(v, x0, s10), s11 = _mm256_fmadd_ps(v, x1, s11);
      v = _mm256_broadcast_ss(a[2] + k);
      s20 = _mm256_fmadd_ps(v, x0, s20), s21 = _mm256_fmadd_ps(v, x1, s21);
      v = _mm256_broadcast_ss(a[3] + k);
      s30 = _mm256_fmadd_ps(v, x0, s30), s31 = _mm256_fmadd_ps(v, x1, s31);
    }
    __m256 s[4][2] = {{s00, s01}, {s10, s11}, {s20, s21}, {s30, s31}};
    for (int64_t i = 0; i < rows; ++i)
      for (int h = 0; h < 2; ++h) {
        float* c = C + i * ldc + n + 8 * h;
        __m256 v = s[i][h];
        if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + n + 8 * h));
        if (acc) v = _mm256_add_ps(v, _mm256_loadu_ps(c));
        _mm256_storeu_ps(c, v);
      }
  }
  for (; n < n1; ++n) {
    float r[4] = {0.f, 0.f, 0.f, 0.f};
    for (int64_t k = 0; k < K; ++k) {
      float x = load1<T>(B.data, k * B.ld + n);
      for (int i = 0; i < 4; ++i) r[i] += a[i][k] * x;
    }
    for (int64_t i = 0; i < rows; ++i) finish(C + i * ldc + n, r[i], acc, bias, n);
  }
}

SPX_AVX2 void dot_rows(int64_t rows, int64_t K, const float* A, int64_t lda, const GemmB& B, int64_t n0, int64_t n1,
                       float* C, int64_t ldc, bool acc, const float* bias) {
  switch (B.dtype) {
    case DType::BF16: return dot_rows_t<DType::BF16>(rows, K, A, lda, B, n0, n1, C, ldc, acc, bias);
    case DType::F16: return dot_rows_t<DType::F16>(rows, K, A, lda, B, n0, n1, C, ldc, acc, bias);
    default: return dot_rows_t<DType::F32>(rows, K, A, lda, B, n0, n1, C, ldc, acc, bias);
  }
}

SPX_AVX2 void axpy_rows(int64_t rows, int64_t K, const float* A, int64_t lda, const GemmB& B, int64_t n0, int64_t n1,
                        float* C, int64_t ldc, bool acc, const float* bias) {
  switch (B.dtype) {
    case DType::BF16: return axpy_rows_t<DType::BF16>(rows, K, A, lda, B, n0, n1, C, ldc, acc, bias);
    case DType::F16: return axpy_rows_t<DType::F16>(rows, K, A, lda, B, n0, n1, C, ldc, acc, bias);
    default: return axpy_rows_t<DType::F32>(rows, K, A, lda, B, n0, n1, C, ldc, acc, bias);
  }
}

}  // namespace

const Kernels* avx2_kernels() {
  static const Kernels k{"avx2", MR, NR, micro, pack_a, pack_b, dot_rows, axpy_rows};
  return &k;
}

}  // namespace gemm_detail
}  // namespace sparsify

#else
namespace sparsify {
namespace gemm_detail {
const Kernels* avx2_kernels() { return nullptr; }
}  // namespace gemm_detail
}  // namespace sparsify
#endif
