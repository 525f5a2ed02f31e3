// Decoder maintenance and optimizer updates (sparsify/sparse_coder.py, torch.optim.Adam, sparsify/sign_sgd.py + schedulefree):
//   normalize_rows: W[m] /= (‖W[m]‖₂ + eps)            set_decoder_norm_to_unit_norm, eps = f32 eps
//   project_grad:   g[m] -= <g[m], w[m]> · w[m]         remove_gradient_parallel_to_decoder_directions
//   adam_step:      torch.optim.Adam (no weight decay, not amsgrad), in torch's operation order:
//                   m.lerp_(g, 1-β1); v = v·β2 + (1-β2)·g²; denom = sqrt(v)/sqrt(1-β2^t) + eps;
//                   p -= (lr / (1-β1^t)) · m / denom
//   signum_step:    schedule-free SignSGD step on (y, z) with weight c and momentum β:
//                   x = lerp(y, z, 1-1/β); z -= lr·sign(g); x = lerp(x, z, c); y = lerp(x, z, 1-β)
// Row reductions are one CTA per row with a fixed tree (deterministic). All math in f32.
// The element-wise updates follow the CPU kernels (native/cpu/optim.cpp) operation
// for operation: scalar weights computed in double on the host (as torch's Python floats), and
// __fadd_rn/__fmul_rn so that nvcc does not contract them into FMAs; with IEEE sqrt and
// division (nvcc's defaults) each element should then equal the CPU result bit for bit.
#include <cmath>

#include "cuda/common.cuh"
#include "cuda/cuda_context.h"
#include "cuda/cuda_ops.h"
#include "cuda/device_ops.h"

namespace sparsify {
namespace cuda {

namespace {

// The squared norm is summed in double (block_sum_f64), as the CPU sae_normalize_decoder does (f32
// products are exact in double), so float(sqrt(ss)) almost always equals the CPU's bit for bit.
__global__ void normalize_rows_kernel(float* __restrict__ W, int64_t D, float eps) {
  __shared__ double scratch[32];
  float* row = W + int64_t(blockIdx.x) * D;
  double ss = 0.0;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) ss += double(row[d]) * double(row[d]);
  float norm = float(sqrt(block_sum_f64(ss, scratch)));
  float den = __fadd_rn(norm, eps);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) row[d] = row[d] / den;  // divide, as torch and the CPU
}

__global__ void project_grad_kernel(float* __restrict__ G, const float* __restrict__ W, int64_t D) {
  __shared__ float scratch[32];
  float* g = G + int64_t(blockIdx.x) * D;
  const float* w = W + int64_t(blockIdx.x) * D;
  float dot = 0.f;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) dot = fmaf(g[d], w[d], dot);
  dot = block_sum(dot, scratch);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) g[d] = g[d] - dot * w[d];
}

// The weights 1-β1 and 1-β2 are the host's double values rounded once (an f32 1.f - float(β2) is
// 9.99987e-4 for β2 = 0.999, 1.3e-5 relative off torch's float(1 - 0.999)), and v's update is
// v·β2 + w2·(g·g), as the CPU.
__global__ void adam_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                            float* __restrict__ v, int64_t n, float w1, bool w1_small, float b2, float w2, float eps,
                            float step_size, float bc2_sqrt) {
  const float one_minus_w1 = 1.f - w1;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = g[i];
    const float mi = w1_small ? lerp_small(m[i], gi, w1) : lerp_large(m[i], gi, one_minus_w1);  // exp_avg.lerp_(g, 1-β1)
    const float vi = __fadd_rn(__fmul_rn(v[i], b2), __fmul_rn(w2, __fmul_rn(gi, gi)));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2_sqrt), eps);
    p[i] = __fadd_rn(p[i], __fmul_rn(-step_size, __fdiv_rn(mi, denom)));  // p.addcdiv_(m, denom, -step_size)
    m[i] = mi;
    v[i] = vi;
  }
}

// The CPU's signum_loop exactly: the weights are the host's doubles rounded once (1.f - 1.f/β
// differs from float(1 - 1/β)), the y->x lerp takes torch's branch for the weight, and
// schedulefree's add/sub swap of x and z (which rounds) is kept.
__global__ void signum_kernel(float* __restrict__ y, float* __restrict__ z, const float* __restrict__ g, int64_t n,
                              float lr, float c, bool c_small, float w_yx, float w_y) {
  const float one_minus_c = 1.f - c;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = g[i];
    const float x = lerp_small(y[i], z[i], w_yx);  // y -> x (|1 - 1/β| < 0.5 for β > 2/3; CPU uses this form always)
    const float s = __fadd_rn(z[i], x);            // swap(z, p) by add/sub, as schedulefree does
    float pz = __fsub_rn(s, x);
    const float zx = __fsub_rn(s, pz);
    const float sg = float(gi > 0.f) - float(gi < 0.f);  // sign, 0 for 0 and NaN (CPU sign_of)
    pz = __fadd_rn(pz, __fmul_rn(-lr, sg));              // SignSGD on z
    const float s2 = __fadd_rn(zx, pz);                  // swap back
    const float px = __fsub_rn(s2, pz);
    const float zn = __fsub_rn(s2, px);
    const float x2 = c_small ? lerp_small(px, zn, c) : lerp_large(px, zn, one_minus_c);
    y[i] = lerp_small(x2, zn, w_y);
    z[i] = zn;
  }
}

unsigned grid_for(int64_t n) { return unsigned(std::max<int64_t>(1, std::min<int64_t>((n + 255) / 256, 65535LL * 4))); }

// Owned copies: the updates below write into these buffers (never into the caller's tensors).
DeviceTensor upload_f32(const Tensor& t, cudaStream_t s) { return upload_owned(t.dtype == DType::F32 ? t : t.to(DType::F32), s); }
float* f32(DeviceTensor& t) { return static_cast<float*>(t.buf.get()); }

}  // namespace

void normalize_rows_dev(float* W, int64_t M, int64_t D, float eps, cudaStream_t s) {
  if (M == 0) return;
  SPX_LAUNCH(unsigned(M), 256, 0, s, normalize_rows_kernel)(W, D, eps);
  CUDA_CHECK_LAUNCH();
}

void project_grad_dev(float* G, const float* W, int64_t M, int64_t D, cudaStream_t s) {
  if (M == 0) return;
  SPX_LAUNCH(unsigned(M), 256, 0, s, project_grad_kernel)(G, W, D);
  CUDA_CHECK_LAUNCH();
}

void adam_dev(float* p, const float* g, float* m, float* v, int64_t n, double lr, double beta1, double beta2, double eps,
              int64_t step, cudaStream_t s) {
  if (n == 0) return;
  // torch computes these scalars in double on the host (python floats), then uses them in f32.
  double bc1 = 1.0 - std::pow(beta1, double(step)), bc2 = 1.0 - std::pow(beta2, double(step));
  const float w1 = float(1.0 - beta1);
  SPX_LAUNCH(grid_for(n), 256, 0, s, adam_kernel)(p, g, m, v, n, w1, std::fabs(w1) < 0.5f, float(beta2), float(1.0 - beta2),
                                          float(eps), float(lr / bc1), float(std::sqrt(bc2)));
  CUDA_CHECK_LAUNCH();
}

void signum_dev(float* y, float* z, const float* g, int64_t n, double lr, double c, double beta, cudaStream_t s) {
  if (n == 0) return;
  const float cf = float(c);
  SPX_LAUNCH(grid_for(n), 256, 0, s, signum_kernel)(y, z, g, n, float(lr), cf, std::fabs(cf) < 0.5f, float(1.0 - 1.0 / beta),
                                            float(1.0 - beta));
  CUDA_CHECK_LAUNCH();
}

Tensor normalize_rows(const Tensor& w, float eps) {
  const int64_t M = w.dim(0), D = w.dim(1);
  Session ses;
  cudaStream_t s = ses.stream();
  DeviceTensor dw = upload_f32(w, s);
  normalize_rows_dev(f32(dw), M, D, eps, s);
  Tensor r = download(dw.data(), {M, D}, DType::F32, s);
  ses.sync();
  return r;
}

Tensor project_grad(const Tensor& grad, const Tensor& w) {
  const int64_t M = w.dim(0), D = w.dim(1);
  Session ses;
  cudaStream_t s = ses.stream();
  DeviceTensor dg = upload_f32(grad, s), dw = upload_f32(w, s);
  project_grad_dev(f32(dg), f32(dw), M, D, s);
  Tensor r = download(dg.data(), {M, D}, DType::F32, s);
  ses.sync();
  return r;
}

AdamState adam_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, double lr, double beta1,
                    double beta2, double eps, int64_t step) {
  const int64_t n = param.numel();
  Session ses;
  cudaStream_t s = ses.stream();
  DeviceTensor dp = upload_f32(param, s), dg = upload_f32(grad, s), dm = upload_f32(m, s), dv = upload_f32(v, s);
  adam_dev(f32(dp), f32(dg), f32(dm), f32(dv), n, lr, beta1, beta2, eps, step, s);
  AdamState r;
  r.param = download(dp.data(), param.shape, DType::F32, s);
  r.m = download(dm.data(), param.shape, DType::F32, s);
  r.v = download(dv.data(), param.shape, DType::F32, s);
  ses.sync();
  return r;
}

SignumState signum_step(const Tensor& y, const Tensor& z, const Tensor& grad, double lr, double c, double beta) {
  const int64_t n = y.numel();
  Session ses;
  cudaStream_t s = ses.stream();
  DeviceTensor dy = upload_f32(y, s), dz = upload_f32(z, s), dg = upload_f32(grad, s);
  signum_dev(f32(dy), f32(dz), f32(dg), n, lr, c, beta, s);
  SignumState r;
  r.y = download(dy.data(), y.shape, DType::F32, s);
  r.z = download(dz.data(), y.shape, DType::F32, s);
  ses.sync();
  return r;
}

}  // namespace cuda
}  // namespace sparsify
