// Transformer building blocks on the GPU (the *_dev entry points serve the model forward):
//   layer_norm: (x - mean) / sqrt(var + eps) · w + b       (biased variance, as torch LayerNorm)
//   rms_norm:   x / sqrt(mean(x²) + eps) · w  (· (1 + w) when add_one: Gemma)
//   rope:       x [T, H, hd] rotated over its first rotary_dim dims by angle pos·θ^(-2i/rotary_dim);
//               neox: pairs (i, i + rotary_dim/2) (HF rotate_half), else interleaved (2i, 2i+1)
//   activation: GELU (erf), GELU (tanh approximation), SiLU, ReLU, quick GELU
// The *_dev entry points (device_ops.h) run the same kernels on f32 device buffers (model forward).
// One CTA per row for the norms (two-pass mean/variance in f32, fixed reduction tree).
#include "cuda/common.cuh"
#include "cuda/cuda_context.h"
#include "cuda/device_ops.h"
#include "cuda/cuda_ops.h"

namespace sparsify {
namespace cuda {

namespace {

__global__ void layer_norm_kernel(const void* __restrict__ x, DType xdt, const void* __restrict__ w, DType wdt,
                                  const void* __restrict__ b, DType bdt, int64_t D, float eps, float* __restrict__ out) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  float s = 0.f;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) s += load_f32(x, xdt, r * D + d);
  const float mean = block_sum(s, scratch) / float(D);
  float q = 0.f;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    float c = load_f32(x, xdt, r * D + d) - mean;
    q = fmaf(c, c, q);
  }
  const float rstd = rsqrtf(block_sum(q, scratch) / float(D) + eps);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    float y = (load_f32(x, xdt, r * D + d) - mean) * rstd;
    if (w) y *= load_f32(w, wdt, d);
    if (b) y += load_f32(b, bdt, d);
    out[r * D + d] = y;
  }
}

__global__ void rms_norm_kernel(const void* __restrict__ x, DType xdt, const void* __restrict__ w, DType wdt,
                                int64_t D, float eps, bool add_one, float* __restrict__ out) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  float q = 0.f;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    float v = load_f32(x, xdt, r * D + d);
    q = fmaf(v, v, q);
  }
  const float rstd = rsqrtf(block_sum(q, scratch) / float(D) + eps);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    float y = load_f32(x, xdt, r * D + d) * rstd;
    if (w) {
      float wv = load_f32(w, wdt, d);
      y *= add_one ? 1.f + wv : wv;
    }
    out[r * D + d] = y;
  }
}

// One thread per (t, h, pair i < rotary_dim/2). inv_freq = θ^(-2i/rotary_dim) is computed in
// double and rounded to f32; the angle pos·inv_freq is an f32 product, as HF computes it (the
// model forward does not use this kernel: it takes the CPU forward's tables, model::rope_tables).
__global__ void rope_kernel(const void* __restrict__ x, DType xdt, const int* __restrict__ pos, int64_t T, int64_t H,
                            int64_t hd, int64_t rd, double theta, bool neox, float* __restrict__ out) {
  const int64_t half = rd / 2, total = T * H * hd;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = e / (H * hd), d = e % hd;
    float v = load_f32(x, xdt, e);
    if (d >= rd) {
      out[e] = v;
      continue;
    }
    int64_t i, partner;
    bool first;
    if (neox) {
      first = d < half;
      i = first ? d : d - half;
      partner = first ? e + half : e - half;
    } else {
      first = (d & 1) == 0;
      i = d >> 1;
      partner = first ? e + 1 : e - 1;
    }
    const float inv_freq = float(pow(theta, -double(2 * i) / double(rd)));
    const float ang = float(pos[t]) * inv_freq;
    float sn, cs;
    sincosf(ang, &sn, &cs);
    const float o = load_f32(x, xdt, partner);
    out[e] = first ? v * cs - o * sn : v * cs + o * sn;
  }
}

__global__ void activation_kernel(const void* __restrict__ x, DType xdt, int64_t n, int act, float* __restrict__ out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float v = load_f32(x, xdt, i), y;
    switch (act) {
      case 0: y = 0.5f * v * (1.f + erff(v * 0.70710678118654752f)); break;
      case 1: {
        float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
        y = 0.5f * v * (1.f + tanhf(u));
        break;
      }
      case 2: y = v / (1.f + expf(-v)); break;
      case 4: y = v / (1.f + expf(-1.702f * v)); break;  // quick_gelu
      default: y = v > 0.f ? v : 0.f; break;
    }
    out[i] = y;
  }
}

unsigned grid_for(int64_t n) { return unsigned(std::max<int64_t>(1, std::min<int64_t>((n + 255) / 256, 65535LL * 4))); }

}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps) {
  const int64_t D = x.dim(-1), R = D ? x.numel() / D : 0;
  Session ses;
  cudaStream_t s = ses.stream();
  DeviceTensor dx = upload(x, s), dw, db;
  if (w.defined()) dw = upload(w, s);
  if (b.defined()) db = upload(b, s);
  DeviceBuffer out(size_t(x.numel()) * 4, s);
  if (R > 0) {
    SPX_LAUNCH(unsigned(R), 256, 0, s, layer_norm_kernel)(dx.data(), x.dtype, w.defined() ? dw.data() : nullptr, w.dtype,
                                                  b.defined() ? db.data() : nullptr, b.dtype, D, eps, out.as<float>());
    CUDA_CHECK_LAUNCH();
  }
  Tensor r = download(out.get(), x.shape, DType::F32, s);
  ses.sync();
  return r;
}

Tensor rms_norm(const Tensor& x, const Tensor& w, float eps, bool add_one) {
  const int64_t D = x.dim(-1), R = D ? x.numel() / D : 0;
  Session ses;
  cudaStream_t s = ses.stream();
  DeviceTensor dx = upload(x, s), dw;
  if (w.defined()) dw = upload(w, s);
  DeviceBuffer out(size_t(x.numel()) * 4, s);
  if (R > 0) {
    SPX_LAUNCH(unsigned(R), 256, 0, s, rms_norm_kernel)(dx.data(), x.dtype, w.defined() ? dw.data() : nullptr, w.dtype, D,
                                                eps, add_one, out.as<float>());
    CUDA_CHECK_LAUNCH();
  }
  Tensor r = download(out.get(), x.shape, DType::F32, s);
  ses.sync();
  return r;
}

Tensor rope(const Tensor& x, const Tensor& positions, double theta, int64_t rotary_dim, bool neox) {
  const int64_t T = x.dim(0), H = x.dim(1), hd = x.dim(2);
  Session ses;
  cudaStream_t s = ses.stream();
  DeviceTensor dx = upload(x, s), dp = upload(positions, s);
  DeviceBuffer out(size_t(x.numel()) * 4, s);
  if (x.numel() > 0) {
    SPX_LAUNCH(grid_for(x.numel()), 256, 0, s, rope_kernel)(dx.data(), x.dtype, static_cast<const int*>(dp.data()), T, H, hd,
                                                    rotary_dim, theta, neox, out.as<float>());
    CUDA_CHECK_LAUNCH();
  }
  Tensor r = download(out.get(), x.shape, DType::F32, s);
  ses.sync();
  return r;
}

Tensor activation(const Tensor& x, Act a) {
  Session ses;
  cudaStream_t s = ses.stream();
  DeviceTensor dx = upload(x, s);
  DeviceBuffer out(size_t(x.numel()) * 4, s);
  if (x.numel() > 0) {
    SPX_LAUNCH(grid_for(x.numel()), 256, 0, s, activation_kernel)(dx.data(), x.dtype, x.numel(), int(a), out.as<float>());
    CUDA_CHECK_LAUNCH();
  }
  Tensor r = download(out.get(), x.shape, DType::F32, s);
  ses.sync();
  return r;
}

// ---- device-pointer entry points (f32 device buffers, stream-ordered, no sync)
void layer_norm_dev(const float* x, const float* w, const float* b, int64_t rows, int64_t D, float eps, float* out,
                    cudaStream_t s) {
  if (rows <= 0 || D <= 0) return;
  SPX_LAUNCH(unsigned(rows), 256, 0, s, layer_norm_kernel)(x, DType::F32, w, DType::F32, b, DType::F32, D, eps, out);
  CUDA_CHECK_LAUNCH();
}

void rms_norm_dev(const float* x, const float* w, int64_t rows, int64_t D, float eps, bool add_one, float* out,
                  cudaStream_t s) {
  if (rows <= 0 || D <= 0) return;
  SPX_LAUNCH(unsigned(rows), 256, 0, s, rms_norm_kernel)(x, DType::F32, w, DType::F32, D, eps, add_one, out);
  CUDA_CHECK_LAUNCH();
}

void activation_dev(const float* x, int64_t n, Act a, float* out, cudaStream_t s) {
  if (n <= 0) return;
  SPX_LAUNCH(grid_for(n), 256, 0, s, activation_kernel)(x, DType::F32, n, int(a), out);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace sparsify
