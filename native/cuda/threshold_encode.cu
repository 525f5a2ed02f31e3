// Fused threshold encoder (ReLU / JumpReLU / gated latents) on the device. CUDA twin of
// native/cpu/threshold_encode.cpp (rule in native/cpu/threshold_encode.h); float64 reference:
// native/ref/threshold_encode_reference.cpp and packages/core/src/kinds/reference.ts.
//   g = x' W_enc[m]^T, kept iff g + gate_bias[m] > gate_threshold[m] and v = g·value_scale[m] + value_bias[m] > 0
//
// One CTA owns 32 rows and walks every 32-latent tile in latent order: the tile's pre-activations
// come from an f32 shared-memory tile product (each thread 4 outputs) and only live in shared
// memory, so the N x M pre-activations are never written to global memory. A warp owns 4 rows;
// per tile its lanes (one per latent) ballot the kept latents and append them in latent order at
// the row's running fill. Two passes over the GEMM: the first counts each row's kept latents,
// the second writes them at row offsets (padded [N, W] with W = max count, or CSR). The product
// is f32 on CUDA cores, not the bf16 tensor-core tile of the TopK encoder: a kept/dropped
// decision is a comparison at the threshold, and f32 keeps it the same as the CPU kernel's f32
// GEMM except for values within f32 rounding of the threshold.
#include <algorithm>
#include <cfloat>
#include <string>

#include "core/errors.h"
#include "cuda/common.cuh"
#include "cuda/cuda_context.h"
#include "cuda/cuda_ops.h"
#include "cuda/preact_tile.cuh"
#include "cuda/threshold_device.h"

namespace sparsify {
namespace cuda {
namespace {

// x' = x - b_dec (or x), and the first flat index of a non-finite x (atomicMin; N*D when none;
// NaN fails the comparison, +-Inf exceeds FLT_MAX).
__global__ void encoder_input_kernel(const float* __restrict__ x, const float* __restrict__ b_dec, int64_t N, int64_t D,
                                     float* __restrict__ xin, unsigned long long* __restrict__ first_bad) {
  const int64_t total = N * D;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const float v = x[i];
    if (!(fabsf(v) <= FLT_MAX)) atomicMin(first_bad, (unsigned long long)i);
    xin[i] = b_dec ? v - b_dec[i % D] : v;
  }
}

// Pass 1 (out_vals == nullptr): counts[n] = kept latents of row n.
// Pass 2: writes row n's kept (value, latent) pairs from offset row_off(n) = row_ptr ? row_ptr[n] : n * width.
__global__ void __launch_bounds__(256) threshold_encode_kernel(const float* __restrict__ xin, ThresholdDev w, int64_t N,
                                                                 const int64_t* __restrict__ row_ptr, int64_t width,
                                                                 int* __restrict__ counts, float* __restrict__ out_vals,
                                                                 int* __restrict__ out_idx) {
  __shared__ float As[TR][TK + 1];
  __shared__ float Bs[TL][TK + 1];
  __shared__ float G[TR][TL + 1];
  __shared__ int fill[TR];
  const int64_t D = w.D, M = w.M, r0 = int64_t(blockIdx.x) * TR;
  const int tid = threadIdx.x, col = tid % TL, rg = tid / TL;  // 8 row groups: rows rg + 8 i
  const int lane = tid & 31, warp = tid >> 5;
  if (tid < TR) fill[tid] = 0;
  for (int64_t m0 = 0; m0 < M; m0 += TL) {
    float acc[4];
    tile_preact(As, Bs, xin, N, D, r0, [&](int r) { return m0 + r < M ? w.W_enc + (m0 + r) * D : nullptr; }, acc);
#pragma unroll
    for (int i = 0; i < 4; ++i) G[rg + 8 * i][col] = acc[i];
    __syncthreads();
    // Warp `warp` owns rows warp + 8 i; lane = latent m0 + lane.
    const int64_t m = m0 + lane;
    for (int i = 0; i < 4; ++i) {
      const int r = warp + 8 * i;
      const int64_t n = r0 + r;
      float v = 0.f;
      bool kept = false;
      if (n < N && m < M) {
        const float g = G[r][lane];
        const float th = w.gate_threshold ? w.gate_threshold[m] : 0.f;
        if (g + w.gate_bias[m] > th) {
          v = w.value_scale ? g * w.value_scale[m] + w.value_bias[m] : g + w.value_bias[m];
          kept = v > 0.f;
        }
      }
      const unsigned ballot = __ballot_sync(FULL_MASK, kept);
      if (out_vals && kept) {
        const int64_t at = (row_ptr ? row_ptr[n] : n * width) + fill[r] + __popc(ballot & ((1u << lane) - 1u));
        out_vals[at] = v;
        out_idx[at] = int(m);
      }
      __syncwarp();
      if (lane == 0) fill[r] += __popc(ballot);
      __syncwarp();
    }
  }
  __syncthreads();
  if (!out_vals && tid < TR && r0 + tid < N) counts[r0 + tid] = fill[tid];
}

// Padding slots of the [N, width] form: value 0 at latent 0.
__global__ void pad_rows_kernel(const int* __restrict__ counts, int64_t N, int64_t width, float* __restrict__ vals,
                                int* __restrict__ idx) {
  const int64_t total = N * width;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    if (i % width >= counts[i / width]) {
      vals[i] = 0.f;
      idx[i] = 0;
    }
}

// Exclusive scan of counts into row_ptr [N + 1] (one thread: a step's rows are few thousand).
__global__ void row_ptr_kernel(const int* __restrict__ counts, int64_t N, int64_t* __restrict__ row_ptr) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  int64_t s = 0;
  row_ptr[0] = 0;
  for (int64_t n = 0; n < N; ++n) row_ptr[n + 1] = (s += counts[n]);
}

unsigned grid_for(int64_t n) { return unsigned(std::max<int64_t>(1, std::min<int64_t>((n + 255) / 256, 65535LL * 8))); }

}  // namespace

void encoder_input_dev(const float* x, const float* b_dec, int64_t N, int64_t D, float* xin, cudaStream_t s) {
  DeviceBuffer bad(sizeof(unsigned long long), s);
  const unsigned long long none = (unsigned long long)(N * D);
  CUDA_CHECK(cudaMemcpyAsync(bad.get(), &none, sizeof none, cudaMemcpyHostToDevice, s));
  if (N * D > 0) {
    SPX_LAUNCH(grid_for(N * D), 256, 0, s, encoder_input_kernel)(x, b_dec, N, D, xin, bad.as<unsigned long long>());
    CUDA_CHECK_LAUNCH();
  }
  unsigned long long first = 0;
  CUDA_CHECK(cudaMemcpyAsync(&first, bad.get(), sizeof first, cudaMemcpyDeviceToHost, s));
  CUDA_CHECK(cudaStreamSynchronize(s));
  if (first < none) fail(ErrorKind::Value, "x contains NaN or Inf (first at flat index " + std::to_string(first) + ")");
}

void threshold_count_dev(const float* xin, const ThresholdDev& w, int64_t N, int* counts, cudaStream_t s) {
  if (N == 0) return;
  SPX_LAUNCH(ceil_div(N, TR), 256, 0, s, threshold_encode_kernel)(xin, w, N, nullptr, 0, counts, nullptr, nullptr);
  CUDA_CHECK_LAUNCH();
}

void threshold_write_dev(const float* xin, const ThresholdDev& w, int64_t N, const int64_t* row_ptr, int64_t width,
                         float* vals, int* idx, cudaStream_t s) {
  if (N == 0) return;
  SPX_LAUNCH(ceil_div(N, TR), 256, 0, s, threshold_encode_kernel)(xin, w, N, row_ptr, width, nullptr, vals, idx);
  CUDA_CHECK_LAUNCH();
}

void row_ptr_dev(const int* counts, int64_t N, int64_t* row_ptr, cudaStream_t s) {
  SPX_LAUNCH(1, 1, 0, s, row_ptr_kernel)(counts, N, row_ptr);
  CUDA_CHECK_LAUNCH();
}

ThresholdEncodeResult threshold_encode(const ThresholdEncodeArgs& a) {
  const int64_t N = a.x.dim(0), D = a.x.dim(1), M = a.w_enc.dim(0);
  const bool on_device = a.x.device() == Device::CUDA;
  Session ses;
  cudaStream_t s = ses.stream();
  DeviceTensor dx = upload(a.x, s), dw = upload(a.w_enc, s), dgb = upload(a.gate_bias, s), dvb = upload(a.value_bias, s);
  DeviceTensor dth, dsc, dbd;
  if (a.gate_threshold.defined()) dth = upload(a.gate_threshold, s);
  if (a.value_scale.defined()) dsc = upload(a.value_scale, s);
  if (a.b_dec.defined()) dbd = upload(a.b_dec, s);
  DeviceBuffer xin(size_t(std::max<int64_t>(N * D, 1)) * 4, s);
  encoder_input_dev(static_cast<const float*>(dx.data()), a.b_dec.defined() ? static_cast<const float*>(dbd.data()) : nullptr,
                    N, D, xin.as<float>(), s);
  ThresholdDev w{D, M, static_cast<const float*>(dw.data()), static_cast<const float*>(dgb.data()),
                 a.gate_threshold.defined() ? static_cast<const float*>(dth.data()) : nullptr,
                 a.value_scale.defined() ? static_cast<const float*>(dsc.data()) : nullptr,
                 static_cast<const float*>(dvb.data())};
  Tensor counts = device_empty({N}, DType::I32, s);
  threshold_count_dev(xin.as<float>(), w, N, counts.data<int>(), s);
  Tensor hc = to_host(counts, s);
  ses.sync();
  int64_t width = 1;
  for (int64_t n = 0; n < N; ++n) width = std::max<int64_t>(width, hc.data<int>()[n]);
  Tensor vals = device_empty({N, width}, DType::F32, s), idx = device_empty({N, width}, DType::I32, s);
  if (N > 0) {
    threshold_write_dev(xin.as<float>(), w, N, nullptr, width, vals.data<float>(), idx.data<int>(), s);
    SPX_LAUNCH(grid_for(N * width), 256, 0, s, pad_rows_kernel)(counts.data<int>(), N, width, vals.data<float>(), idx.data<int>());
    CUDA_CHECK_LAUNCH();
  }
  ThresholdEncodeResult r;
  if (on_device) {
    r.acts = vals;
    r.indices = idx;
    r.counts = counts;
  } else {
    r.acts = to_host(vals, s);
    r.indices = to_host(idx, s);
    r.counts = hc;
  }
  ses.sync();
  return r;
}

}  // namespace cuda
}  // namespace sparsify
