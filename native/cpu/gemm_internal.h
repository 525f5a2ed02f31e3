// Pieces shared by the GEMM driver (gemm.cpp) and its instruction-set specific kernels
// (gemm_portable.cpp, gemm_avx2.cpp). Not part of the public interface.
#pragma once
#include <cstdint>

#include "cpu/gemm.h"

namespace sparsify {
namespace gemm_detail {

// Register tile of the micro-kernel: MR rows of C by NR columns.
constexpr int MR = 6;
constexpr int NR = 16;

// One instruction set's kernels. Packed layouts:
//   A panel: MR rows x kc, stored k-major: dst[k*MR + i] (rows past `rows` are zero).
//   B panel: kc x NR columns, stored k-major: dst[k*NR + j] (columns past `cols` are zero).
struct Kernels {
  const char* name;
  // C[MR,NR] (row stride ldc) = (add ? C : 0) + Ap·Bp (+ bias[0..NR) when bias != nullptr).
  void (*micro)(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, bool add, const float* bias);
  // Packs rows [0, rows) (rows <= MR), columns [0, kc) of A. May write up to 8 floats past the
  // panel end (the caller's buffer has that slack; later panels overwrite it).
  void (*pack_a)(const float* A, int64_t lda, int64_t rows, int64_t kc, float* dst);
  // Packs columns [n0, n0+cols) (cols <= NR) and depth [k0, k0+kc) of op(B), widened to f32.
  void (*pack_b)(const GemmB& B, int64_t n0, int64_t cols, int64_t k0, int64_t kc, float* dst);
  // Small-M / small-N path, B stored [N,K] (of any float dtype): for the `rows` (<= 4) rows of A,
  // C[i, n] = (acc ? C[i,n] : 0) + dot(A[i,:], B[n,:]) + bias[n] for n in [n0, n1).
  void (*dot_rows)(int64_t rows, int64_t K, const float* A, int64_t lda, const GemmB& B, int64_t n0, int64_t n1,
                   float* C, int64_t ldc, bool acc, const float* bias);
  // Small-M path, B stored [K,N]: same contract as dot_rows.
  void (*axpy_rows)(int64_t rows, int64_t K, const float* A, int64_t lda, const GemmB& B, int64_t n0, int64_t n1,
                    float* C, int64_t ldc, bool acc, const float* bias);
};

const Kernels& portable_kernels();

// Overrides the cache blocking (MC rows, KC depth, NC columns); for tuning runs only.
void set_blocking(int64_t mc, int64_t kc, int64_t nc);
// nullptr when this binary was built without the AVX2 kernels (non-x86 targets).
const Kernels* avx2_kernels();

}  // namespace gemm_detail
}  // namespace sparsify
