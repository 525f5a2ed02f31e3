// Decoder maintenance and optimizer updates (sparsify-reference §2.1, §2.5, §5.2, §5.3):
//   normalize_rows: W[m] /= (‖W[m]‖₂ + eps)            set_decoder_norm_to_unit_norm, eps = f32 eps
//   project_grad:   g[m] -= <g[m], w[m]> · w[m]         remove_gradient_parallel_to_decoder_directions
//   adam_step:      torch.optim.Adam (no weight decay, not amsgrad), in torch's operation order:
//                   m.lerp_(g, 1-β1); v = v·β2 + (1-β2)·g²; denom = sqrt(v)/sqrt(1-β2^t) + eps;
//                   p -= (lr / (1-β1^t)) · m / denom
//   signum_step:    schedule-free SignSGD step on (y, z) with weight c and momentum β:
//                   x = lerp(y, z, 1-1/β); z -= lr·sign(g); x = lerp(x, z, c); y = lerp(x, z, 1-β)
// Row reductions are one CTA per row with a fixed tree (deterministic). All math in f32.
#include "common.cuh"
#include "cuda_context.h"
#include "kernels.h"
#include "device_ops.h"

namespace sparsify {
namespace cuda {

namespace {

// torch.lerp's f32 formula (aten/src/ATen/native/Lerp.h): chosen by |w| < 0.5 for accuracy.
__device__ __forceinline__ float torch_lerp(float a, float b, float w) {
  return fabsf(w) < 0.5f ? a + w * (b - a) : b - (b - a) * (1.f - w);
}

__global__ void normalize_rows_kernel(float* __restrict__ W, int64_t D, float eps) {
  __shared__ float scratch[32];
  float* row = W + int64_t(blockIdx.x) * D;
  float ss = 0.f;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) ss = fmaf(row[d], row[d], ss);
  float norm = sqrtf(block_sum(ss, scratch));
  float inv = 1.f / (norm + eps);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) row[d] = row[d] * inv;
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

__global__ void adam_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                            float* __restrict__ v, int64_t n, float beta1, float beta2, float eps, float step_size,
                            float bc2_sqrt) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float gi = g[i];
    float mi = torch_lerp(m[i], gi, 1.f - beta1);
    float vi = v[i] * beta2 + (1.f - beta2) * gi * gi;
    float denom = sqrtf(vi) / bc2_sqrt + eps;
    p[i] = p[i] - step_size * (mi / denom);
    m[i] = mi;
    v[i] = vi;
  }
}

__global__ void signum_kernel(float* __restrict__ y, float* __restrict__ z, const float* __restrict__ g, int64_t n,
                              float lr, float c, float beta) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float yi = y[i], zi = z[i], gi = g[i];
    float x = torch_lerp(yi, zi, 1.f - 1.f / beta);
    float sg = gi > 0.f ? 1.f : (gi < 0.f ? -1.f : 0.f);
    zi = zi - lr * sg;
    x = torch_lerp(x, zi, c);
    y[i] = torch_lerp(x, zi, 1.f - beta);
    z[i] = zi;
  }
}

unsigned grid_for(int64_t n) { return unsigned(std::max<int64_t>(1, std::min<int64_t>((n + 255) / 256, 65535LL * 4))); }

// Owned copies: the updates below write into these buffers (never into the caller's tensors).
DeviceTensor upload_f32(const Tensor& t, cudaStream_t s) { return upload_owned(t.dtype == DType::F32 ? t : t.to(DType::F32), s); }
float* f32(DeviceTensor& t) { return static_cast<float*>(t.buf.get()); }

}  // namespace

void normalize_rows_dev(float* W, int64_t M, int64_t D, float eps, cudaStream_t s) {
  if (M == 0) return;
  normalize_rows_kernel<<<unsigned(M), 256, 0, s>>>(W, D, eps);
  CUDA_CHECK_LAUNCH();
}

void project_grad_dev(float* G, const float* W, int64_t M, int64_t D, cudaStream_t s) {
  if (M == 0) return;
  project_grad_kernel<<<unsigned(M), 256, 0, s>>>(G, W, D);
  CUDA_CHECK_LAUNCH();
}

void adam_dev(float* p, const float* g, float* m, float* v, int64_t n, double lr, double beta1, double beta2, double eps,
              int64_t step, cudaStream_t s) {
  if (n == 0) return;
  // torch computes these scalars in double on the host (python floats), then uses them in f32.
  double bc1 = 1.0 - std::pow(beta1, double(step)), bc2 = 1.0 - std::pow(beta2, double(step));
  adam_kernel<<<grid_for(n), 256, 0, s>>>(p, g, m, v, n, float(beta1), float(beta2), float(eps), float(lr / bc1),
                                          float(std::sqrt(bc2)));
  CUDA_CHECK_LAUNCH();
}

void signum_dev(float* y, float* z, const float* g, int64_t n, double lr, double c, double beta, cudaStream_t s) {
  if (n == 0) return;
  signum_kernel<<<grid_for(n), 256, 0, s>>>(y, z, g, n, float(lr), float(c), float(beta));
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
