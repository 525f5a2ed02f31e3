// Reference of the bf16-operand GEMM (cpu/gemm_bf16.cpp): both operands rounded to bf16 exactly
// as the kernels round them (f32_to_bf16_rne), then a plain loop with double accumulation.
#include "cpu/gemm_bf16.h"

namespace sparsify {

void gemm_bf16_reference(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const GemmB& B, float* C,
                         int64_t ldc, const float* bias) {
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        const int64_t bi = B.trans ? n * B.ld + k : k * B.ld + n;
        const uint16_t b = B.dtype == DType::BF16 ? static_cast<const uint16_t*>(B.data)[bi]
                                                  : f32_to_bf16_rne(load_as_f32(B.data, B.dtype, bi));
        acc += double(bf16_to_f32(f32_to_bf16_rne(A[m * lda + k]))) * double(bf16_to_f32(b));
      }
      if (bias) acc += bias[n];
      C[m * ldc + n] = float(acc);
    }
  }
}

}  // namespace sparsify
