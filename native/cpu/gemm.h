// Dense matrix multiply used by the SAE encoder and the transformer forward.
//
//   C[M,N] = A[M,K] · op(B)  (+ C if accumulate) (+ bias[N])
//
// Row-major throughout. A is f32. B may be f32, bf16 or f16 (model weights stay in their file
// dtype; they are widened while packing) and is either stored [N,K] (b_trans = true: the
// torch nn.Linear weight layout, "x @ W^T") or [K,N] (b_trans = false: GPT-2 Conv1D layout).
// Accumulation is f32. Multithreaded over the shared pool.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace sparsify {

struct GemmB {
  const void* data;
  DType dtype;   // F32, BF16 or F16
  int64_t ld;    // leading dimension (row stride in elements) of B as stored
  bool trans;    // true: B stored [N,K]; false: B stored [K,N]
};

void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const GemmB& B, float* C, int64_t ldc,
          bool accumulate = false, const float* bias = nullptr);

// op(B) packed once (widened to f32, in the micro-kernel's panel layout) for many products with
// the same B, e.g. W_enc across the token tiles of one step: gemm() repacks B on every call,
// which costs ~10% at 64-row tiles. About N*K floats (N rounded up to 16, plus one zero panel).
// The layout serves every kernel set. Immutable after packing, so one GemmPackedB may be shared
// by concurrent calls.
struct GemmPackedB {
  int64_t N = 0, K = 0;
  int64_t kstep = 0;            // depth of each packed K block (layout detail)
  std::shared_ptr<float> data;  // 64-byte aligned
};

// Packs op(B) ([N,K] view of B as in gemm()). Multithreaded.
GemmPackedB gemm_pack_b(int64_t N, int64_t K, const GemmB& B);

// C[M, n1-n0] = A[M,K] · op(B)[:, n0:n1]  (+ C if accumulate) (+ bias[n1-n0], indexed like C's
// columns). n0 must be a multiple of 16 (panel boundary; checked), 0 <= n0 <= n1 <= packed.N.
// Threads like gemm(); runs inline when called from inside a parallel region.
void gemm_prepacked(int64_t M, int64_t n0, int64_t n1, const float* A, int64_t lda, const GemmPackedB& B, float* C,
                    int64_t ldc, bool accumulate = false, const float* bias = nullptr);

// Name of the kernel set gemm() uses: "avx512" (AVX-512F), "avx2" (AVX2+FMA+F16C) or "portable".
// The best the CPU runs, unless $SPARSIFY_GEMM (auto|avx512|avx2|portable) names one; when it
// names a set this CPU cannot run, this and every gemm call throw a Value error saying so.
const char* gemm_kernel_name();
// Pins the kernel set by name ("auto": back to the $SPARSIFY_GEMM / automatic choice); a Value
// error when this CPU or build cannot run it. Process-wide; for tests and benchmarks.
void gemm_force_kernels(const std::string& name);
// The kernel sets this CPU and build can run, best first (always ends with "portable").
std::vector<std::string> gemm_available_kernels();

// What gemm() runs with now: the kernel set, its register tile, the cache blocking and the cache
// sizes it was derived from (see docs/gemm.md).
struct GemmInfo {
  const char* kernels;
  int mr, nr;
  int64_t mc, kc, nc;
  int64_t l1d, l2, l3;
  const char* cache_source;  // "sysfs", "cpuid" or "default"
};
GemmInfo gemm_info();

// Plain triple loop with double accumulation: the reference the tests compare against.
void gemm_reference(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const GemmB& B, float* C,
                    int64_t ldc, bool accumulate = false, const float* bias = nullptr);

}  // namespace sparsify
