#include "cpu/gemm.h"

namespace sparsify {

void gemm_reference(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const GemmB& B, float* C,
                    int64_t ldc, bool accumulate, const float* bias) {
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        int64_t bi = B.trans ? n * B.ld + k : k * B.ld + n;
        acc += double(A[m * lda + k]) * double(load_as_f32(B.data, B.dtype, bi));
      }
      if (bias) acc += bias[n];
      if (accumulate) acc += C[m * ldc + n];
      C[m * ldc + n] = float(acc);
    }
  }
}

}  // namespace sparsify
