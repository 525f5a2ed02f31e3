// Pieces shared by the GEMM driver (gemm.cpp) and its instruction-set specific kernels
// (gemm_portable.cpp, gemm_avx2.cpp, gemm_avx512.cpp). Not part of the public interface.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "cpu/gemm.h"

namespace sparsify {
namespace gemm_detail {

// B is packed in panels of PANEL columns, whatever the kernel: a micro-kernel NR columns wide
// reads NR / PANEL consecutive panels. One layout lets a GemmPackedB serve every kernel set and
// keeps the 16-column boundary of gemm_prepacked.
constexpr int PANEL = 16;
// Largest register tile of any kernel set (sizes the edge-tile scratch and the zero panels that
// pad packed B so a wide tile never reads past its K block).
constexpr int MAX_MR = 16;
constexpr int MAX_NR = 32;

// One instruction set's kernels. Packed layouts:
//   A panel: mr rows x kc, stored k-major: dst[k*mr + i] (rows past `rows` are zero).
//   B panel: kc x PANEL columns, stored k-major: dst[k*PANEL + j] (columns past `cols` are zero);
//            a tile of nr columns is nr / PANEL such panels back to back (kc * PANEL floats apart).
struct Kernels {
  const char* name;
  int mr, nr;  // register tile: C[mr, nr]; nr a multiple of PANEL, mr <= MAX_MR, nr <= MAX_NR
  // C[mr,nr] (row stride ldc) = (add ? C : 0) + Ap·Bp (+ bias[0..nr) when bias != nullptr).
  void (*micro)(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, bool add, const float* bias);
  // Packs rows [0, rows) (rows <= mr), columns [0, kc) of A. May write up to 8 floats past the
  // panel end (the caller's buffer has that slack; later panels overwrite it).
  void (*pack_a)(const float* A, int64_t lda, int64_t rows, int64_t kc, float* dst);
  // Packs columns [n0, n0+cols) (cols <= PANEL) and depth [k0, k0+kc) of op(B), widened to f32.
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
// nullptr when this binary was built without the AVX2 kernels (non-x86 targets).
const Kernels* avx2_kernels();
// nullptr when this binary was built without the AVX-512 kernels (non-x86 targets).
const Kernels* avx512_kernels();

// Cache blocking of the driver: MC rows of A (multiple of mr), KC depth (multiple of 8), NC
// columns of B (multiple of nr). Derived from the cache sizes and the kernel's tile.
struct Blocking {
  int64_t mc, kc, nc;
};
Blocking blocking_for(const Kernels& kr);
// Overrides the cache blocking (MC rows, KC depth, NC columns) of every kernel set; for tuning
// runs only. mc <= 0 returns to the derived blocking.
void set_blocking(int64_t mc, int64_t kc, int64_t nc);

}  // namespace gemm_detail
}  // namespace sparsify
