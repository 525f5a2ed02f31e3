// The sparse backward passes, CUDA twin of native/cpu/sae_backward.cpp (float64 reference:
// native/ref/sae_reference.cpp):
//   decode backward:   grad_acts[n,j] = <grad_out[n], W_dec[idx[n,j]]>
//                      grad_W_dec[m]  = Σ_{(n,j): idx[n,j]=m} acts[n,j] · grad_out[n]
//                      grad_b_dec     = Σ_n grad_out[n]
//   encoder backward:  grad_x[n]      = Σ_j g[n,j] · W_enc[idx[n,j]]          (embedding-bag)
//                      grad_W_enc[m]  = Σ_{(n,j): idx[n,j]=m} g[n,j] · x_in[n]
//                      grad_b_enc[m]  = Σ_{(n,j): idx[n,j]=m} g[n,j]
//                      (no ReLU mask, as FusedEncoder.backward)
// The scatter-adds are deterministic: the (n,j) slots are sorted by latent with a stable radix
// sort (CUB), so each latent's contributions are summed in increasing n·k+j order by one CTA
// (a CSR "rows of W" gather), never with float atomics. The Triton kernel of sparsify fills its
// CSR with atomics and is not bitwise reproducible; this one is.

#include <cub/device/device_radix_sort.cuh>

#include "cuda/common.cuh"
#include "cuda/cuda_context.h"
#include "cuda/cuda_ops.h"
#include "cuda/device_ops.h"

namespace sparsify {
namespace cuda {

namespace {

// One warp per (n, j): dot(G[n], W[idx[n,j]]), fixed lane striding + butterfly (deterministic).
__global__ void slot_dot_kernel(const float* __restrict__ G, const int* __restrict__ idx, int64_t NK, int k,
                                const void* __restrict__ W, DType wdt, int64_t D, float* __restrict__ out) {
  const int64_t slot = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (slot >= NK) return;  // whole warp leaves together
  const int64_t n = slot / k, m = idx[slot];
  float acc = 0.f;
  for (int64_t d = lane; d < D; d += 32) acc = fmaf(G[n * D + d], load_f32(W, wdt, m * D + d), acc);
  acc = warp_sum(acc);
  if (lane == 0) out[slot] = acc;
}

// start[m] = first position of latent m in the sorted keys (lower bound); start[M] = NK.
__global__ void csr_starts_kernel(const int* __restrict__ sorted, int64_t NK, int64_t M, int64_t* __restrict__ start) {
  for (int64_t m = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; m <= M; m += int64_t(gridDim.x) * blockDim.x) {
    int64_t lo = 0, hi = NK;
    while (lo < hi) {
      int64_t mid = (lo + hi) >> 1;
      if (sorted[mid] < m) lo = mid + 1; else hi = mid;
    }
    start[m] = lo;
  }
}

// out[m] = Σ_e w[slot_e] · R[slot_e / k] over latent m's slots in sorted order; out_sum[m] = Σ_e w.
__global__ void csr_rows_kernel(const int64_t* __restrict__ start, const int* __restrict__ slots,
                                const float* __restrict__ w, int k, const float* __restrict__ R, int64_t D,
                                float* __restrict__ out, float* __restrict__ out_sum, bool accumulate) {
  const int64_t m = blockIdx.x;
  const int64_t b = start[m], e = start[m + 1];
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.f;
    for (int64_t q = b; q < e; ++q) {
      int s = slots[q];
      acc = fmaf(w[s], R[int64_t(s / k) * D + d], acc);
    }
    out[m * D + d] = accumulate ? out[m * D + d] + acc : acc;
  }
  if (out_sum && threadIdx.x == 0) {
    float acc = 0.f;
    for (int64_t q = b; q < e; ++q) acc += w[slots[q]];
    out_sum[m] = accumulate ? out_sum[m] + acc : acc;
  }
}

// out[d] = Σ_n G[n,d]: 32 columns per CTA, 8 row-strided partial sums per column, fixed order.
__global__ void column_sum_kernel(const float* __restrict__ G, int64_t N, int64_t D, float scale, bool accumulate,
                                  float* __restrict__ out) {
  __shared__ float part[8][33];
  const int64_t d = int64_t(blockIdx.x) * 32 + threadIdx.x;
  float acc = 0.f;
  if (d < D)
    for (int64_t n = threadIdx.y; n < N; n += 8) acc += G[n * D + d];
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && d < D) {
    float t = 0.f;
    for (int i = 0; i < 8; ++i) t += part[i][threadIdx.x];
    out[d] = accumulate ? out[d] + scale * t : scale * t;
  }
}

__global__ void iota_kernel(int* p, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    p[i] = int(i);
}

unsigned grid_for(int64_t n, int threads = 256) { return unsigned(std::min<int64_t>((n + threads - 1) / threads, 65535)); }

DeviceTensor upload_f32(const Tensor& t, cudaStream_t s) { return upload(t.dtype == DType::F32 ? t : t.to(DType::F32), s); }

}  // namespace

// Stable sort of the N·k slots by latent; fills start [M+1] and slots [NK].
Csr build_csr(const int* idx, int64_t NK, int64_t M, cudaStream_t s) {
  Csr c;
  c.start = DeviceBuffer(size_t(M + 1) * 8, s);
  c.slots = DeviceBuffer(size_t(std::max<int64_t>(NK, 1)) * 4, s);
  DeviceBuffer keys_out(size_t(std::max<int64_t>(NK, 1)) * 4, s), iota(size_t(std::max<int64_t>(NK, 1)) * 4, s);
  if (NK > 0) {
    SPX_LAUNCH(grid_for(NK), 256, 0, s, iota_kernel)(iota.as<int>(), NK);
    CUDA_CHECK_LAUNCH();
    int end_bit = 1;
    while ((int64_t(1) << end_bit) < M) ++end_bit;
    size_t temp_bytes = 0;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, idx, keys_out.as<int>(), iota.as<int>(),
                                               c.slots.as<int>(), NK, 0, end_bit, s));
    DeviceBuffer temp(temp_bytes, s);
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.get(), temp_bytes, idx, keys_out.as<int>(), iota.as<int>(),
                                               c.slots.as<int>(), NK, 0, end_bit, s));
  }
  SPX_LAUNCH(grid_for(M + 1), 256, 0, s, csr_starts_kernel)(keys_out.as<int>(), NK, M, c.start.as<int64_t>());
  CUDA_CHECK_LAUNCH();
  return c;
}

void csr_rows(const Csr& c, const float* w, int k, const float* R, int64_t M, int64_t D, float* out, float* out_sum,
              bool accumulate, cudaStream_t s) {
  if (M == 0) return;
  SPX_LAUNCH(unsigned(M), 128, 0, s, csr_rows_kernel)(c.start.as<int64_t>(), c.slots.as<int>(), w, k, R, D, out, out_sum,
                                              accumulate);
  CUDA_CHECK_LAUNCH();
}

void slot_dot(const float* G, const int* idx, int64_t NK, int k, const void* W, DType wdt, int64_t D, float* out,
              cudaStream_t s) {
  if (NK == 0) return;
  SPX_LAUNCH(unsigned((NK * 32 + 255) / 256), 256, 0, s, slot_dot_kernel)(G, idx, NK, k, W, wdt, D, out);
  CUDA_CHECK_LAUNCH();
}

void column_sum(const float* G, int64_t N, int64_t D, float scale, float* out, bool accumulate, cudaStream_t s) {
  if (D == 0) return;
  SPX_LAUNCH(ceil_div(D, 32), dim3(32, 8), 0, s, column_sum_kernel)(G, N, D, scale, accumulate, out);
  CUDA_CHECK_LAUNCH();
}

DecodeGrads decode_backward(const Tensor& grad_out, const Tensor& acts, const Tensor& indices, const Tensor& w_dec) {
  const int64_t N = acts.dim(0), k = acts.dim(1), M = w_dec.dim(0), D = w_dec.dim(1), NK = N * k;
  Session ses;
  cudaStream_t s = ses.stream();
  DeviceTensor dg = upload_f32(grad_out, s), da = upload_f32(acts, s), di = upload(indices, s), dw = upload(w_dec, s);
  const int* idx = static_cast<const int*>(di.data());
  const float* G = static_cast<const float*>(dg.data());
  DeviceBuffer gw(size_t(M * D) * 4, s), ga(size_t(NK) * 4, s), gb(size_t(D) * 4, s);
  slot_dot(G, idx, NK, int(k), dw.data(), w_dec.dtype, D, ga.as<float>(), s);
  Csr c = build_csr(idx, NK, M, s);
  csr_rows(c, static_cast<const float*>(da.data()), int(k), G, M, D, gw.as<float>(), nullptr, false, s);
  column_sum(G, N, D, 1.f, gb.as<float>(), false, s);
  DecodeGrads r;
  r.grad_w_dec = download(gw.get(), {M, D}, DType::F32, s);
  r.grad_acts = download(ga.get(), {N, k}, DType::F32, s);
  r.grad_b_dec = download(gb.get(), {D}, DType::F32, s);
  ses.sync();
  return r;
}

EncoderGrads encoder_backward(const Tensor& grad_acts, const Tensor& indices, const Tensor& x_in, const Tensor& w_enc) {
  const int64_t N = grad_acts.dim(0), k = grad_acts.dim(1), M = w_enc.dim(0), D = w_enc.dim(1), NK = N * k;
  Session ses;
  cudaStream_t s = ses.stream();
  DeviceTensor dg = upload_f32(grad_acts, s), di = upload(indices, s), dx = upload_f32(x_in, s), dw = upload(w_enc, s);
  const int* idx = static_cast<const int*>(di.data());
  const float* g = static_cast<const float*>(dg.data());
  DeviceBuffer gx(size_t(N * D) * 4, s), gw(size_t(M * D) * 4, s), gb(size_t(M) * 4, s);
  embedding_bag(g, idx, N, int(k), dw.data(), w_enc.dtype, D, nullptr, DType::F32, gx.as<float>(), s);
  Csr c = build_csr(idx, NK, M, s);
  csr_rows(c, g, int(k), static_cast<const float*>(dx.data()), M, D, gw.as<float>(), gb.as<float>(), false, s);
  EncoderGrads r;
  r.grad_x = download(gx.get(), {N, D}, DType::F32, s);
  r.grad_w_enc = download(gw.get(), {M, D}, DType::F32, s);
  r.grad_b_enc = download(gb.get(), {M}, DType::F32, s);
  ses.sync();
  return r;
}

}  // namespace cuda
}  // namespace sparsify
