// AVX-512F GEMM kernels. Like gemm_avx2.cpp, every function carries a target attribute and
// gemm.cpp only calls them after checking the CPU at run time. B is packed (and bf16/f16 widened)
// by the AVX2 packers: the panel layout is shared, and packing is a small part of the time.
#include "cpu/gemm_internal.h"

#if defined(__x86_64__) || defined(__i386__)
// GCC 12 warns about the deliberately undefined vectors inside avx512fintrin.h's reductions.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>

#define SPX_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
#define SPX_AVX512_INLINE __attribute__((target("avx512f,avx2,fma,f16c"), always_inline)) inline

namespace sparsify {
namespace gemm_detail {
namespace {

// Register tile: 12 rows by 32 columns (two zmm, two B panels): 24 accumulators, leaving room
// for the two B vectors; per k 2 B loads and 12 broadcasts feed 24 FMAs.
constexpr int MR = 12;
constexpr int NR = 32;
static_assert(MR <= MAX_MR && NR <= MAX_NR && NR % PANEL == 0, "tile exceeds the driver's limits");

// 16 consecutive elements of a float buffer of dtype T, widened to f32.
template <DType T>
SPX_AVX512_INLINE __m512 load16(const void* p, int64_t i) {
  if constexpr (T == DType::F32) {
    return _mm512_loadu_ps(static_cast<const float*>(p) + i);
  } else {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i));
    if constexpr (T == DType::BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    else return _mm512_cvtph_ps(h);
  }
}

template <DType T>
SPX_AVX512_INLINE float load1(const void* p, int64_t i) {
  if constexpr (T == DType::F32) {
    return static_cast<const float*>(p)[i];
  } else if constexpr (T == DType::BF16) {
    return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
  } else {
    return _cvtsh_ss(static_cast<const uint16_t*>(p)[i]);
  }
}

SPX_AVX512_INLINE void transpose8(__m256& r0, __m256& r1, __m256& r2, __m256& r3, __m256& r4, __m256& r5, __m256& r6,
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

SPX_AVX512_INLINE void put2(float* c, __m512 v0, __m512 v1, __m512 bias0, __m512 bias1, bool add) {
  v0 = _mm512_add_ps(v0, bias0);
  v1 = _mm512_add_ps(v1, bias1);
  if (add) {
    v0 = _mm512_add_ps(v0, _mm512_loadu_ps(c));
    v1 = _mm512_add_ps(v1, _mm512_loadu_ps(c + 16));
  }
  _mm512_storeu_ps(c, v0);
  _mm512_storeu_ps(c + 16, v1);
}

// ---- 12x32 micro-kernel ----
SPX_AVX512 void micro(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, bool add, const float* bias) {
  const float* B0 = Bp;               // columns 0..15
  const float* B1 = Bp + kc * PANEL;  // columns 16..31
  __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps(), c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
  __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps(), c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
  __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps(), c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
  __m512 c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps(), c70 = _mm512_setzero_ps(), c71 = _mm512_setzero_ps();
  __m512 c80 = _mm512_setzero_ps(), c81 = _mm512_setzero_ps(), c90 = _mm512_setzero_ps(), c91 = _mm512_setzero_ps();
  __m512 ca0 = _mm512_setzero_ps(), ca1 = _mm512_setzero_ps(), cb0 = _mm512_setzero_ps(), cb1 = _mm512_setzero_ps();
  for (int i = 0; i < MR; ++i) _mm_prefetch(reinterpret_cast<const char*>(C + i * ldc), _MM_HINT_T0);
#define SPX_ROW(k, r, i)                              \
  {                                                   \
    __m512 a = _mm512_set1_ps(Ap[(k)*MR + (i)]);      \
    c##r##0 = _mm512_fmadd_ps(a, b0, c##r##0);        \
    c##r##1 = _mm512_fmadd_ps(a, b1, c##r##1);        \
  }
#define SPX_STEP(k)                                                                \
  {                                                                                \
    __m512 b0 = _mm512_load_ps(B0 + (k)*PANEL), b1 = _mm512_load_ps(B1 + (k)*PANEL); \
    SPX_ROW(k, 0, 0) SPX_ROW(k, 1, 1) SPX_ROW(k, 2, 2) SPX_ROW(k, 3, 3) SPX_ROW(k, 4, 4)      \
    SPX_ROW(k, 5, 5) SPX_ROW(k, 6, 6) SPX_ROW(k, 7, 7) SPX_ROW(k, 8, 8) SPX_ROW(k, 9, 9)      \
    SPX_ROW(k, a, 10) SPX_ROW(k, b, 11)                                                      \
  }
  int64_t k = 0;
  for (; k + 4 <= kc; k += 4) {
    _mm_prefetch(reinterpret_cast<const char*>(B0 + 8 * PANEL), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(B1 + 8 * PANEL), _MM_HINT_T0);
    SPX_STEP(0)
    SPX_STEP(1)
    SPX_STEP(2)
    SPX_STEP(3)
    Ap += 4 * MR;
    B0 += 4 * PANEL;
    B1 += 4 * PANEL;
  }
  for (; k < kc; ++k) {
    SPX_STEP(0)
    Ap += MR;
    B0 += PANEL;
    B1 += PANEL;
  }
#undef SPX_STEP
#undef SPX_ROW
  __m512 bb0 = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
  __m512 bb1 = bias ? _mm512_loadu_ps(bias + 16) : _mm512_setzero_ps();
  put2(C, c00, c01, bb0, bb1, add);
  put2(C + ldc, c10, c11, bb0, bb1, add);
  put2(C + 2 * ldc, c20, c21, bb0, bb1, add);
  put2(C + 3 * ldc, c30, c31, bb0, bb1, add);
  put2(C + 4 * ldc, c40, c41, bb0, bb1, add);
  put2(C + 5 * ldc, c50, c51, bb0, bb1, add);
  put2(C + 6 * ldc, c60, c61, bb0, bb1, add);
  put2(C + 7 * ldc, c70, c71, bb0, bb1, add);
  put2(C + 8 * ldc, c80, c81, bb0, bb1, add);
  put2(C + 9 * ldc, c90, c91, bb0, bb1, add);
  put2(C + 10 * ldc, ca0, ca1, bb0, bb1, add);
  put2(C + 11 * ldc, cb0, cb1, bb0, bb1, add);
}

// ---- A packing: 12 rows, k-major. Rows 0-7 and 8-11 (+4 zero rows) go through 8x8 transposes. ----
SPX_AVX512 void pack_a(const float* A, int64_t lda, int64_t rows, int64_t kc, float* dst) {
  if (rows == MR) {
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
      __m256 r0 = _mm256_loadu_ps(A + 0 * lda + k), r1 = _mm256_loadu_ps(A + 1 * lda + k);
      __m256 r2 = _mm256_loadu_ps(A + 2 * lda + k), r3 = _mm256_loadu_ps(A + 3 * lda + k);
      __m256 r4 = _mm256_loadu_ps(A + 4 * lda + k), r5 = _mm256_loadu_ps(A + 5 * lda + k);
      __m256 r6 = _mm256_loadu_ps(A + 6 * lda + k), r7 = _mm256_loadu_ps(A + 7 * lda + k);
      transpose8(r0, r1, r2, r3, r4, r5, r6, r7);
      __m256 q0 = _mm256_loadu_ps(A + 8 * lda + k), q1 = _mm256_loadu_ps(A + 9 * lda + k);
      __m256 q2 = _mm256_loadu_ps(A + 10 * lda + k), q3 = _mm256_loadu_ps(A + 11 * lda + k);
      __m256 q4 = _mm256_setzero_ps(), q5 = _mm256_setzero_ps(), q6 = _mm256_setzero_ps(), q7 = _mm256_setzero_ps();
      transpose8(q0, q1, q2, q3, q4, q5, q6, q7);
      const __m256 lo[8] = {r0, r1, r2, r3, r4, r5, r6, r7};
      const __m256 hi[8] = {q0, q1, q2, q3, q4, q5, q6, q7};
      for (int j = 0; j < 8; ++j) {
        float* d = dst + (k + j) * MR;
        _mm256_storeu_ps(d, lo[j]);
        _mm_storeu_ps(d + 8, _mm256_castps256_ps128(hi[j]));
      }
    }
    for (; k < kc; ++k)
      for (int i = 0; i < MR; ++i) dst[k * MR + i] = A[i * lda + k];
    return;
  }
  for (int64_t k = 0; k < kc; ++k)
    for (int i = 0; i < MR; ++i) dst[k * MR + i] = i < rows ? A[i * lda + k] : 0.f;
}

// ---- small-M / small-N paths (no packing) ----
SPX_AVX512_INLINE void finish(float* c, float v, bool acc, const float* bias, int64_t n) {
  if (bias) v += bias[n];
  *c = acc ? *c + v : v;
}

// 16 results for C columns [n, n+16) at c.
SPX_AVX512_INLINE void store16(float* c, __m512 v, bool acc, const float* bias, int64_t n) {
  if (bias) v = _mm512_add_ps(v, _mm512_loadu_ps(bias + n));
  if (acc) v = _mm512_add_ps(v, _mm512_loadu_ps(c));
  _mm512_storeu_ps(c, v);
}

// Up to 4 rows of A against 2 rows of B at a time: 8 accumulators, B read once for all rows.
// Rows of A past `rows` alias row 0 (computed and discarded) so the loop has one shape.
template <DType T>
SPX_AVX512 void dot_rows_t(int64_t rows, int64_t K, const float* A, int64_t lda, const GemmB& B, int64_t n0,
                           int64_t n1, float* C, int64_t ldc, bool acc, const float* bias) {
  const float* a[4];
  for (int i = 0; i < 4; ++i) a[i] = A + (i < rows ? i : 0) * lda;
  int64_t K16 = K & ~int64_t(15);
  int64_t n = n0;
  for (; n + 2 <= n1; n += 2) {
    int64_t b0 = n * B.ld, b1 = b0 + B.ld;
    __m512 s00 = _mm512_setzero_ps(), s01 = _mm512_setzero_ps(), s10 = _mm512_setzero_ps(), s11 = _mm512_setzero_ps();
    __m512 s20 = _mm512_setzero_ps(), s21 = _mm512_setzero_ps(), s30 = _mm512_setzero_ps(), s31 = _mm512_setzero_ps();
    for (int64_t k = 0; k < K16; k += 16) {
      __m512 x0 = load16<T>(B.data, b0 + k), x1 = load16<T>(B.data, b1 + k);
      __m512 v = _mm512_loadu_ps(a[0] + k);
      s00 = _mm512_fmadd_ps(v, x0, s00), s01 = _mm512_fmadd_ps(v, x1, s01);
      v = _mm512_loadu_ps(a[1] + k);
      s10 = _mm512_fmadd_ps(v, x0, s10), s11 = _mm512_fmadd_ps(v, x1, s11);
      v = _mm512_loadu_ps(a[2] + k);
      s20 = _mm512_fmadd_ps(v, x0, s20), s21 = _mm512_fmadd_ps(v, x1, s21);
      v = _mm512_loadu_ps(a[3] + k);
      s30 = _mm512_fmadd_ps(v, x0, s30), s31 = _mm512_fmadd_ps(v, x1, s31);
    }
    float r[4][2] = {{_mm512_reduce_add_ps(s00), _mm512_reduce_add_ps(s01)},
                     {_mm512_reduce_add_ps(s10), _mm512_reduce_add_ps(s11)},
                     {_mm512_reduce_add_ps(s20), _mm512_reduce_add_ps(s21)},
                     {_mm512_reduce_add_ps(s30), _mm512_reduce_add_ps(s31)}};
    for (int64_t k = K16; k < K; ++k) {
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
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    for (int64_t k = 0; k < K16; k += 16) {
      __m512 x0 = load16<T>(B.data, b0 + k);
      s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a[0] + k), x0, s0);
      s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a[1] + k), x0, s1);
      s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a[2] + k), x0, s2);
      s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a[3] + k), x0, s3);
    }
    float r[4] = {_mm512_reduce_add_ps(s0), _mm512_reduce_add_ps(s1), _mm512_reduce_add_ps(s2),
                  _mm512_reduce_add_ps(s3)};
    for (int64_t k = K16; k < K; ++k) {
      float x0 = load1<T>(B.data, b0 + k);
      for (int i = 0; i < 4; ++i) r[i] += a[i][k] * x0;
    }
    for (int64_t i = 0; i < rows; ++i) finish(C + i * ldc + n, r[i], acc, bias, n);
  }
}

// Up to 4 rows of A against a 32-column strip of B [K,N]: 8 accumulators, one pass over K; then
// 16-column strips, then single columns.
template <DType T>
SPX_AVX512 void axpy_rows_t(int64_t rows, int64_t K, const float* A, int64_t lda, const GemmB& B, int64_t n0,
                            int64_t n1, float* C, int64_t ldc, bool acc, const float* bias) {
  const float* a[4];
  for (int i = 0; i < 4; ++i) a[i] = A + (i < rows ? i : 0) * lda;
  int64_t n = n0;
  for (; n + 32 <= n1; n += 32) {
    __m512 s00 = _mm512_setzero_ps(), s01 = _mm512_setzero_ps(), s10 = _mm512_setzero_ps(), s11 = _mm512_setzero_ps();
    __m512 s20 = _mm512_setzero_ps(), s21 = _mm512_setzero_ps(), s30 = _mm512_setzero_ps(), s31 = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; ++k) {
      int64_t base = k * B.ld + n;
      __m512 x0 = load16<T>(B.data, base), x1 = load16<T>(B.data, base + 16);
      __m512 v = _mm512_set1_ps(a[0][k]);
      s00 = _mm512_fmadd_ps(v, x0, s00), s01 = _mm512_fmadd_ps(v, x1, s01);
      v = _mm512_set1_ps(a[1][k]);
      s10 = _mm512_fmadd_ps(v, x0, s10), s11 = _mm512_fmadd_ps(v, x1, s11);
      v = _mm512_set1_ps(a[2][k]);
      s20 = _mm512_fmadd_ps(v, x0, s20), s21 = _mm512_fmadd_ps(v, x1, s21);
      v = _mm512_set1_ps(a[3][k]);
      s30 = _mm512_fmadd_ps(v, x0, s30), s31 = _mm512_fmadd_ps(v, x1, s31);
    }
    const __m512 s[4][2] = {{s00, s01}, {s10, s11}, {s20, s21}, {s30, s31}};
    for (int64_t i = 0; i < rows; ++i) {
      store16(C + i * ldc + n, s[i][0], acc, bias, n);
      store16(C + i * ldc + n + 16, s[i][1], acc, bias, n + 16);
    }
  }
  for (; n + 16 <= n1; n += 16) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; ++k) {
      __m512 x0 = load16<T>(B.data, k * B.ld + n);
      s0 = _mm512_fmadd_ps(_mm512_set1_ps(a[0][k]), x0, s0);
      s1 = _mm512_fmadd_ps(_mm512_set1_ps(a[1][k]), x0, s1);
      s2 = _mm512_fmadd_ps(_mm512_set1_ps(a[2][k]), x0, s2);
      s3 = _mm512_fmadd_ps(_mm512_set1_ps(a[3][k]), x0, s3);
    }
    const __m512 s[4] = {s0, s1, s2, s3};
    for (int64_t i = 0; i < rows; ++i) store16(C + i * ldc + n, s[i], acc, bias, n);
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

SPX_AVX512 void dot_rows(int64_t rows, int64_t K, const float* A, int64_t lda, const GemmB& B, int64_t n0, int64_t n1,
                         float* C, int64_t ldc, bool acc, const float* bias) {
  switch (B.dtype) {
    case DType::BF16: return dot_rows_t<DType::BF16>(rows, K, A, lda, B, n0, n1, C, ldc, acc, bias);
    case DType::F16: return dot_rows_t<DType::F16>(rows, K, A, lda, B, n0, n1, C, ldc, acc, bias);
    default: return dot_rows_t<DType::F32>(rows, K, A, lda, B, n0, n1, C, ldc, acc, bias);
  }
}

SPX_AVX512 void axpy_rows(int64_t rows, int64_t K, const float* A, int64_t lda, const GemmB& B, int64_t n0, int64_t n1,
                          float* C, int64_t ldc, bool acc, const float* bias) {
  switch (B.dtype) {
    case DType::BF16: return axpy_rows_t<DType::BF16>(rows, K, A, lda, B, n0, n1, C, ldc, acc, bias);
    case DType::F16: return axpy_rows_t<DType::F16>(rows, K, A, lda, B, n0, n1, C, ldc, acc, bias);
    default: return axpy_rows_t<DType::F32>(rows, K, A, lda, B, n0, n1, C, ldc, acc, bias);
  }
}

}  // namespace

const Kernels* avx512_kernels() {
  static const Kernels k{"avx512", MR, NR, micro, pack_a, avx2_kernels()->pack_b, dot_rows, axpy_rows};
  return &k;
}

}  // namespace gemm_detail
}  // namespace sparsify

#else
namespace sparsify {
namespace gemm_detail {
const Kernels* avx512_kernels() { return nullptr; }
}  // namespace gemm_detail
}  // namespace sparsify
#endif
