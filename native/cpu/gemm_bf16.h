// bf16-operand GEMM: the encoder's product in the opt-in bf16 compute mode.
//
//   C[M,N] = bf16(A)[M,K] · bf16(op(B))  (+ bias[N]),   f32 accumulation
//
// Both operands are rounded to bfloat16 (round to nearest even; f32 subnormals flush to signed
// zero, as AVX512_BF16's conversions do), the products are exact in f32 and are summed in f32.
// Two paths, chosen at run time:
//   "avx512_bf16": `vdpbf16ps` (_mm512_dpbf16_ps) on packed bf16 pairs, where the CPU has
//                  AVX512_BF16 and the GEMM's kernel set is avx512;
//   "widen-<set>": the bf16-rounded operands widened to f32 and multiplied by the f32 GEMM
//                  kernel set <set> (avx512, avx2, portable): the same rounded inputs, f32 FMAs.
// SPARSIFY_GEMM / gemm_force_kernels pin the kernel set, hence the path (avx2 -> widen-avx2).
#pragma once
#include <cstdint>
#include <memory>

#include "cpu/gemm.h"

namespace sparsify {

// bf16 bits of x: round to nearest even, subnormals to signed zero (vdpbf16ps reads subnormal
// inputs as zero, so every path sees the same operands), NaN stays NaN (quiet). dtype.h's
// f32_to_bf16 (file conversion) keeps subnormals. bf16_to_f32 (dtype.h) widens exactly.
inline uint16_t f32_to_bf16_rne(float x) {
  uint32_t u;
  __builtin_memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) == 0) return uint16_t((u >> 16) & 0x8000u);           // zero / subnormal
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);  // NaN
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// dst[i] = bf16(src[i]) for i < n (multithreaded for large n).
void round_to_bf16(int64_t n, const float* src, uint16_t* dst);

// The path gemm_bf16 takes now: "avx512_bf16" or "widen-avx512" / "widen-avx2" / "widen-portable".
// Throws the Value error of an unusable $SPARSIFY_GEMM, like gemm().
const char* gemm_bf16_path_name();
// True when this CPU and build can run the vdpbf16ps kernels (AVX512_BF16 and AVX-512F).
bool gemm_bf16_has_dpbf16();
// Tests: take the widening path even where vdpbf16ps is available (false: back to the choice).
void gemm_bf16_force_widen(bool on);

// bf16(op(B)) packed once for many products (W_enc over the row blocks of one encode call).
// The layout belongs to the path chosen when packing; the product checks it is still the same.
struct GemmBf16PackedB {
  int64_t N = 0, K = 0;
  bool dpbf16 = false;                // vdpbf16ps layout (else: widened f32 GemmPackedB)
  int64_t kstep = 0;                  // depth of each packed K block (even)
  std::shared_ptr<uint16_t> pairs;    // dpbf16: [K blocks][panels of 16][kc/2][16][2] bf16
  GemmPackedB widened;                // widen: bf16-rounded B as an f32 GemmPackedB
};

// Packs bf16(op(B)); B of any GemmB dtype (f32 rounded here; bf16 kept; f16 rounded). Multithreaded.
GemmBf16PackedB gemm_bf16_pack_b(int64_t N, int64_t K, const GemmB& B);

// C[M, n1-n0] = A · bf16(op(B))[:, n0:n1] (+ bias[n1-n0]); A [M,K] is already bf16 (row stride
// lda, e.g. from round_to_bf16). n0 a multiple of 16. Threads over the pool; inline when called
// from a parallel region.
void gemm_bf16_prepacked(int64_t M, int64_t n0, int64_t n1, const uint16_t* A, int64_t lda,
                         const GemmBf16PackedB& B, float* C, int64_t ldc, const float* bias = nullptr);

// Reference (native/ref/gemm_bf16_reference.cpp): the operands rounded with f32_to_bf16_rne,
// products and sum in double.
void gemm_bf16_reference(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const GemmB& B, float* C,
                         int64_t ldc, const float* bias = nullptr);

}  // namespace sparsify
