// AVX512_BF16 micro-kernel of the bf16-operand GEMM (gemm_bf16.cpp drives it, after checking the
// CPU at run time). `vdpbf16ps` multiplies 16 pairs of bf16 per zmm and adds both products to an
// f32 lane: twice the multiply-adds of an f32 FMA per instruction.
//
// Packed layouts (uint32 = two bf16, the lower half the even k):
//   A panel: kp = ceil(kc/2) pairs x 12 rows, dst[p*12 + i] = (A[i][2p], A[i][2p+1]);
//   B panel: kp pairs x 16 columns, dst[p*16 + j] = (B[2p][j], B[2p+1][j]); a tile of 32 columns
//            is two panels kp*16 uint32 apart.
// Intel's definition flushes subnormal inputs and outputs (DAZ/FTZ) and rounds to nearest even;
// the operands come here already rounded (no subnormals), so only products below 2^-126 differ
// from the widening path (they become 0).
#include <cstdint>

#if defined(__x86_64__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#define SPX_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

namespace sparsify {
namespace gemm_bf16_detail {

constexpr int MR = 12;
constexpr int PANEL = 16;

// C[12,32] (row stride ldc) = (add ? C : 0) + Ap·Bp (+ bias[0..32) when bias != nullptr).
SPX_AVX512_BF16 void micro_dpbf16_12x32(int64_t kp, const uint32_t* Ap, const uint32_t* Bp, float* C, int64_t ldc,
                                        bool add, const float* bias) {
  const uint32_t* B0 = Bp;               // columns 0..15
  const uint32_t* B1 = Bp + kp * PANEL;  // columns 16..31
  __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps(), c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
  __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps(), c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
  __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps(), c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
  __m512 c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps(), c70 = _mm512_setzero_ps(), c71 = _mm512_setzero_ps();
  __m512 c80 = _mm512_setzero_ps(), c81 = _mm512_setzero_ps(), c90 = _mm512_setzero_ps(), c91 = _mm512_setzero_ps();
  __m512 ca0 = _mm512_setzero_ps(), ca1 = _mm512_setzero_ps(), cb0 = _mm512_setzero_ps(), cb1 = _mm512_setzero_ps();
  for (int i = 0; i < MR; ++i) _mm_prefetch(reinterpret_cast<const char*>(C + i * ldc), _MM_HINT_T0);
#define SPX_ROW(p, r, i)                                                              \
  {                                                                                   \
    __m512bh a = (__m512bh)_mm512_set1_epi32(int(Ap[(p)*MR + (i)]));                  \
    c##r##0 = _mm512_dpbf16_ps(c##r##0, a, b0);                                       \
    c##r##1 = _mm512_dpbf16_ps(c##r##1, a, b1);                                       \
  }
#define SPX_STEP(p)                                                                                   \
  {                                                                                                   \
    __m512bh b0 = (__m512bh)_mm512_loadu_si512(B0 + (p)*PANEL);                                       \
    __m512bh b1 = (__m512bh)_mm512_loadu_si512(B1 + (p)*PANEL);                                       \
    SPX_ROW(p, 0, 0) SPX_ROW(p, 1, 1) SPX_ROW(p, 2, 2) SPX_ROW(p, 3, 3) SPX_ROW(p, 4, 4)               \
    SPX_ROW(p, 5, 5) SPX_ROW(p, 6, 6) SPX_ROW(p, 7, 7) SPX_ROW(p, 8, 8) SPX_ROW(p, 9, 9)               \
    SPX_ROW(p, a, 10) SPX_ROW(p, b, 11)                                                               \
  }
  int64_t p = 0;
  for (; p + 4 <= kp; p += 4) {
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
  for (; p < kp; ++p) {
    SPX_STEP(0)
    Ap += MR;
    B0 += PANEL;
    B1 += PANEL;
  }
#undef SPX_STEP
#undef SPX_ROW
  const __m512 z = _mm512_setzero_ps();
  const __m512 bias0 = bias ? _mm512_loadu_ps(bias) : z, bias1 = bias ? _mm512_loadu_ps(bias + 16) : z;
#define SPX_PUT(r, i)                                                   \
  {                                                                     \
    float* c = C + (i)*ldc;                                             \
    __m512 v0 = _mm512_add_ps(c##r##0, bias0), v1 = _mm512_add_ps(c##r##1, bias1); \
    if (add) {                                                          \
      v0 = _mm512_add_ps(v0, _mm512_loadu_ps(c));                       \
      v1 = _mm512_add_ps(v1, _mm512_loadu_ps(c + 16));                  \
    }                                                                   \
    _mm512_storeu_ps(c, v0);                                            \
    _mm512_storeu_ps(c + 16, v1);                                       \
  }
  SPX_PUT(0, 0) SPX_PUT(1, 1) SPX_PUT(2, 2) SPX_PUT(3, 3) SPX_PUT(4, 4) SPX_PUT(5, 5)
  SPX_PUT(6, 6) SPX_PUT(7, 7) SPX_PUT(8, 8) SPX_PUT(9, 9) SPX_PUT(a, 10) SPX_PUT(b, 11)
#undef SPX_PUT
}

bool dpbf16_built() { return true; }

}  // namespace gemm_bf16_detail
}  // namespace sparsify

#else  // not x86-64: the widening path only

namespace sparsify {
namespace gemm_bf16_detail {
void micro_dpbf16_12x32(int64_t, const uint32_t*, const uint32_t*, float*, int64_t, bool, const float*) {}
bool dpbf16_built() { return false; }
}  // namespace gemm_bf16_detail
}  // namespace sparsify

#endif
