// Portable GEMM kernels (plain C++; the compiler vectorises them for the baseline ISA). Used
// when the CPU lacks AVX2/FMA and as the behavioural twin of gemm_avx2.cpp.
#include <algorithm>
#include <cstring>

#include "cpu/gemm_internal.h"

namespace sparsify {
namespace gemm_detail {
namespace {

// Register tile: 6 rows by 16 columns (one B panel), as in the AVX2 kernels.
constexpr int MR = 6;
constexpr int NR = 16;

// 4-lane vectors through the GCC/Clang vector extension: SSE on baseline x86-64, NEON on arm64.
typedef float v4 __attribute__((vector_size(16)));

inline v4 load4(const float* p) {
  v4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Two passes over k, 8 columns each: the 6x8 accumulator block is 12 vector registers (the full
// 6x16 tile would spill on baseline x86-64, which has 16).
void micro(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, bool add, const float* bias) {
  for (int j0 = 0; j0 < NR; j0 += 8) {
    v4 c00{}, c01{}, c10{}, c11{}, c20{}, c21{}, c30{}, c31{}, c40{}, c41{}, c50{}, c51{};
    const float* a = Ap;
    const float* b = Bp + j0;
    for (int64_t k = 0; k < kc; ++k, a += MR, b += NR) {
      v4 b0 = load4(b), b1 = load4(b + 4);
      c00 += a[0] * b0, c01 += a[0] * b1;
      c10 += a[1] * b0, c11 += a[1] * b1;
      c20 += a[2] * b0, c21 += a[2] * b1;
      c30 += a[3] * b0, c31 += a[3] * b1;
      c40 += a[4] * b0, c41 += a[4] * b1;
      c50 += a[5] * b0, c51 += a[5] * b1;
    }
    const v4 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int i = 0; i < MR; ++i) {
      float* c = C + i * ldc + j0;
      for (int j = 0; j < 8; ++j) {
        float v = acc[i][j / 4][j % 4] + (bias ? bias[j0 + j] : 0.f);
        c[j] = add ? c[j] + v : v;
      }
    }
  }
}

void pack_a(const float* A, int64_t lda, int64_t rows, int64_t kc, float* dst) {
  for (int64_t k = 0; k < kc; ++k)
    for (int i = 0; i < MR; ++i) dst[k * MR + i] = i < rows ? A[i * lda + k] : 0.f;
}

void pack_b(const GemmB& B, int64_t n0, int64_t cols, int64_t k0, int64_t kc, float* dst) {
  for (int64_t k = 0; k < kc; ++k)
    for (int j = 0; j < NR; ++j) {
      float v = 0.f;
      if (j < cols) {
        int64_t idx = B.trans ? (n0 + j) * B.ld + (k0 + k) : (k0 + k) * B.ld + (n0 + j);
        v = load_as_f32(B.data, B.dtype, idx);
      }
      dst[k * NR + j] = v;
    }
}

void dot_rows(int64_t rows, int64_t K, const float* A, int64_t lda, const GemmB& B, int64_t n0, int64_t n1, float* C,
              int64_t ldc, bool acc, const float* bias) {
  for (int64_t n = n0; n < n1; ++n) {
    float s[4] = {0.f, 0.f, 0.f, 0.f};
    for (int64_t k = 0; k < K; ++k) {
      float b = load_as_f32(B.data, B.dtype, n * B.ld + k);
      for (int64_t i = 0; i < rows; ++i) s[i] += A[i * lda + k] * b;
    }
    for (int64_t i = 0; i < rows; ++i) {
      float v = s[i] + (bias ? bias[n] : 0.f);
      C[i * ldc + n] = acc ? C[i * ldc + n] + v : v;
    }
  }
}

void axpy_rows(int64_t rows, int64_t K, const float* A, int64_t lda, const GemmB& B, int64_t n0, int64_t n1, float* C,
               int64_t ldc, bool acc, const float* bias) {
  constexpr int64_t NB = 64;
  float s[4][NB];
  for (int64_t nb = n0; nb < n1; nb += NB) {
    int64_t w = std::min(NB, n1 - nb);
    for (int64_t i = 0; i < rows; ++i) std::fill(s[i], s[i] + w, 0.f);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < w; ++j) {
        float b = load_as_f32(B.data, B.dtype, k * B.ld + nb + j);
        for (int64_t i = 0; i < rows; ++i) s[i][j] += A[i * lda + k] * b;
      }
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < w; ++j) {
        float v = s[i][j] + (bias ? bias[nb + j] : 0.f);
        float* c = C + i * ldc + nb + j;
        *c = acc ? *c + v : v;
      }
  }
}

}  // namespace

const Kernels& portable_kernels() {
  static const Kernels k{"portable", MR, NR, micro, pack_a, pack_b, dot_rows, axpy_rows};
  return k;
}

}  // namespace gemm_detail
}  // namespace sparsify
