// Global gradient-norm clipping on the device (torch.nn.utils.clip_grad_norm_ as SAELens's trainer
// calls it; CPU twin: native/cpu/grad_clip.cpp, float64 reference: native/ref/grad_clip_reference.cpp):
//   grad_sum_squares: *out = Σ over the buffers of Σ g²  (double, a fixed grid: deterministic)
//   grad_scale:       g *= min(1, max_norm / (sqrt(*sumsq) + 1e-6)) in f32, the coefficient read on
//                     the device, so that clipping needs no host round trip inside the step.
#include <cmath>

#include "cuda/common.cuh"
#include "cuda/cuda_context.h"
#include "cuda/device_ops.h"

namespace sparsify {
namespace cuda {

namespace {

constexpr int kClipBlocks = 256;

// partial[blockIdx.x] += Σ over this block's grid-stride share of g²
__global__ void grad_sumsq_partial_kernel(const float* __restrict__ g, int64_t n, double* __restrict__ partial) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const double v = double(g[i]);
    acc += v * v;
  }
  acc = block_sum_f64(acc, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] += acc;
}

__global__ void grad_sumsq_finish_kernel(const double* __restrict__ partial, int n, double* __restrict__ out) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
  acc = block_sum_f64(acc, scratch);
  if (threadIdx.x == 0) *out = acc;
}

__global__ void grad_scale_kernel(float* __restrict__ g, int64_t n, const double* __restrict__ sumsq, double max_norm) {
  const double coef = fmin(1.0, max_norm / (sqrt(*sumsq) + 1e-6));
  if (coef >= 1.0) return;
  const float c = float(coef);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    g[i] = __fmul_rn(g[i], c);
}

unsigned grid_of(int64_t n) { return unsigned(std::max<int64_t>(1, std::min<int64_t>((n + 255) / 256, 65535LL * 4))); }

}  // namespace

void grad_sum_squares(const std::vector<GradBuffer>& grads, double* out, cudaStream_t s) {
  DeviceBuffer partial(size_t(kClipBlocks) * sizeof(double), s);
  double* p = static_cast<double*>(partial.get());
  CUDA_CHECK(cudaMemsetAsync(p, 0, size_t(kClipBlocks) * sizeof(double), s));
  for (const GradBuffer& b : grads) {
    if (b.n == 0) continue;
    SPX_LAUNCH(kClipBlocks, 256, 0, s, grad_sumsq_partial_kernel)(b.g, b.n, p);
    CUDA_CHECK_LAUNCH();
  }
  SPX_LAUNCH(1, 256, 0, s, grad_sumsq_finish_kernel)(p, kClipBlocks, out);
  CUDA_CHECK_LAUNCH();
}

void grad_scale(float* g, int64_t n, const double* sumsq, double max_norm, cudaStream_t s) {
  if (n == 0) return;
  SPX_LAUNCH(grid_of(n), 256, 0, s, grad_scale_kernel)(g, n, sumsq, max_norm);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace sparsify
