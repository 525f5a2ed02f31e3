// Sparse decode: out[n] = Σ_j acts[n,j] · W_dec[idx[n,j]] (+ b_dec), parallel over rows.
// CUDA twin: native/cuda/sae_decode.cu; float64 reference: native/ref/sae_reference.cpp.
#include <string>

#include "core/errors.h"
#include "core/parallel.h"
#include "cpu/isa.h"
#include "cpu/sae.h"

namespace sparsify {
namespace {

void check_indices(int64_t n, const int32_t* idx, int64_t M, const char* what) {
  bool bad = false;
  for (int64_t i = 0; i < n; ++i) bad |= idx[i] < 0 || idx[i] >= M;
  if (bad) {
    int64_t at = 0;
    while (idx[at] >= 0 && idx[at] < M) ++at;
    fail(ErrorKind::Value, std::string(what) + " has index " + std::to_string(idx[at]) + " at flat position " +
                               std::to_string(at) + ", outside [0, " + std::to_string(M) + ")");
  }
}

struct DecodeRows {
  int64_t k, D;
  const float *acts, *W_dec, *b_dec;
  const int32_t* idx;
  float* out;
  inline __attribute__((always_inline)) void body(int64_t r0, int64_t r1) const {
    for (int64_t n = r0; n < r1; ++n) {
      float* __restrict o = out + n * D;
      if (b_dec)
        for (int64_t d = 0; d < D; ++d) o[d] = b_dec[d];
      else
        for (int64_t d = 0; d < D; ++d) o[d] = 0.f;
      for (int64_t j = 0; j < k; ++j) {
        const float a = acts[n * k + j];
        const float* __restrict w = W_dec + int64_t(idx[n * k + j]) * D;
        for (int64_t d = 0; d < D; ++d) o[d] += a * w[d];
      }
    }
  }
  // The same loop compiled per instruction set (the FMA variants give identical results: each
  // output element is the same chain of fused multiply-adds in j order).
#if defined(__x86_64__)
  __attribute__((target("avx2,fma"))) void body_avx2(int64_t r0, int64_t r1) const { body(r0, r1); }
  __attribute__((target("avx512f,avx2,fma"))) void body_avx512(int64_t r0, int64_t r1) const { body(r0, r1); }
#endif
  void body_generic(int64_t r0, int64_t r1) const { body(r0, r1); }
  void run(Isa isa, int64_t r0, int64_t r1) const {
#if defined(__x86_64__)
    if (isa == Isa::Avx512) return body_avx512(r0, r1);
    if (isa == Isa::Avx2) return body_avx2(r0, r1);
#endif
    (void)isa;
    body_generic(r0, r1);
  }
};
}  // namespace

void sae_decode(int64_t N, int64_t k, int64_t D, int64_t M, const float* acts, const int32_t* idx, const float* W_dec,
                const float* b_dec, float* out) {
  check_indices(N * k, idx, M, "top_indices");
  const DecodeRows dr{k, D, acts, W_dec, b_dec, idx, out};
  const Isa isa = active_isa();
  parallel_for(N, 16, [&](int64_t r0, int64_t r1) { dr.run(isa, r0, r1); });
}

}  // namespace sparsify
