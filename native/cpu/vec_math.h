// Vectorised elementwise functions and row reductions for the forward: AVX-512, AVX2+FMA or
// portable, the variant of isa.h (so SPARSIFY_GEMM / gemm_force_kernels pin it). exp is a Cephes-style polynomial, within 2 ulp of expf over its range.
#pragma once
#include <cstdint>

namespace sparsify {
namespace model {

// x[i] = exp(x[i] - shift) for i in [0, n); returns the sum of the results.
float exp_shifted_sum(float* x, int64_t n, float shift);
// y = x * sigmoid(x) (SiLU) and y = x * sigmoid(2 * sqrt(2/pi) * (x + 0.044715 x^3)), which is
// exactly 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (GELU, tanh approximation).
void silu(const float* x, float* y, int64_t n);
void gelu_tanh(const float* x, float* y, int64_t n);
// y = 0.5 x (1 + erf(x / sqrt(2))) (exact GELU); erf from Abramowitz-Stegun 7.1.26 on the vector
// path (absolute error < 1.5e-7), std::erf on the portable path.
void gelu_erf(const float* x, float* y, int64_t n);

// x[i] = cap * tanh(x[i] * scale / cap) (attention logit soft-capping; cap <= 0: x[i] *= scale).
void scale_softcap(float* x, int64_t n, float scale, float cap);

// max of x[0..n) (-inf for n = 0; NaN values are passed over, as std::max does).
float row_max(const float* x, int64_t n);
// x[i] *= s; x[i] = x[i] + a[i] (residual add); y[i] = a[i] * y[i] (gated MLP).
void scale_inplace(float* x, int64_t n, float s);
void add_inplace(float* x, const float* a, int64_t n);
void mul_inplace(float* y, const float* a, int64_t n);
// y = (x - mean) * rstd * w + b (b may be null); y = w * (x * r), or (x * r) * (1 + w) for Gemma.
// Rounded like the scalar loops on every variant.
void layer_norm_apply(const float* x, float* y, int64_t n, float mean, float rstd, const float* w, const float* b);
void rms_norm_apply(const float* x, float* y, int64_t n, float r, const float* w, bool one_plus);

// Sum and sum of squared deviations from `center` of x[0..n), accumulated in double.
void row_moments(const float* x, int64_t n, double center, double* sum, double* sumsq);

}  // namespace model
}  // namespace sparsify
