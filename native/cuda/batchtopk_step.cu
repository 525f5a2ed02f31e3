// BatchTopK / Matryoshka training step on the device. CUDA twin of native/cpu/batchtopk_step.cpp
// (formulas in native/cpu/batchtopk_step.h); float64 reference: packages/core/src/kinds/reference.ts.
//
// Global selection by radix select on the f32 bit patterns: a = ReLU(h)·n > 0 orders like its
// bits as uint32, so four 8-bit histogram passes over the batch find the exact key T of the
// floor(k N)-th largest value (each pass recomputes the pre-activations tile by tile in shared
// memory, as the encoder does: the N x M values are never stored). Then one pass counts per row
// the values > T and == T; ties at T are kept in flat-index order (row, then latent), the CPU
// kernel's order, by giving each row its share of the ties from a prefix over rows; a last pass
// writes the kept (value, latent) pairs in CSR form. Six tile passes instead of one with a
// candidate buffer: memory stays O(N + M) whatever k is. The rest follows the CPU kernel: decodes
// of the full width and of each prefix, g_h per kept entry, per-latent (stable CSR) and per-column
// gradient sums in double. Per-row selection (TopK, Matryoshka over TopK) runs the same radix
// select with one histogram and threshold key per row.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/errors.h"
#include "cuda/common.cuh"
#include "cuda/cuda_context.h"
#include "cuda/device_ops.h"
#include "cuda/preact_tile.cuh"
#include "cuda/row_topk.cuh"
#include "cuda/threshold_device.h"
#include "cuda/threshold_step_device.h"

namespace sparsify {
namespace cuda {
namespace {

enum class Pass { Histogram, Count, Write };

struct SelectDev {
  const float *xin, *W_enc, *b_enc, *norm;
  int64_t N, M, D;
  // Histogram: keys whose bits above `shift + 8` equal prefix's go to bin (key >> shift) & 255.
  uint32_t prefix;
  int shift;
  unsigned long long* hist;  // [256]
  uint32_t T;                // Count / Write: the threshold key
  // Per-row selection (TopK): row n's prefix / threshold key and its [256] histogram instead.
  const uint32_t* row_key;
  unsigned* row_hist;
  int *gt, *eq;              // Count: per row, keys > T and == T
  const int* keep_eq;        // Write: ties kept in the row
  const int64_t* row_ptr;    // Write
  float* vals;
  int* idx;
};

__global__ void __launch_bounds__(256) batchtopk_select_kernel(SelectDev p, Pass pass) {
  __shared__ float As[TR][TK + 1];
  __shared__ float Bs[TL][TK + 1];
  __shared__ uint32_t K[TR][TL + 1];
  __shared__ unsigned long long hist[256];
  __shared__ int fill[TR], tie_fill[TR], gt[TR];
  const int64_t D = p.D, M = p.M, N = p.N, r0 = int64_t(blockIdx.x) * TR;
  const int tid = threadIdx.x, col = tid % TL, rg = tid / TL, lane = tid & 31, warp = tid >> 5;
  hist[tid] = 0;
  if (tid < TR) fill[tid] = tie_fill[tid] = gt[tid] = 0;
  for (int64_t m0 = 0; m0 < M; m0 += TL) {
    float acc[4];
    tile_preact(As, Bs, p.xin, N, D, r0, [&](int r) { return m0 + r < M ? p.W_enc + (m0 + r) * D : nullptr; }, acc);
    const int64_t mc = m0 + col;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = rg + 8 * i;
      uint32_t key = 0;  // 0: not positive (never selected)
      if (r0 + r < N && mc < M) {
        const float a = (acc[i] + p.b_enc[mc]) * p.norm[mc];
        if (a > 0.f) memcpy(&key, &a, 4);
      }
      K[r][col] = key;
      if (pass != Pass::Histogram || key == 0) continue;
      if (p.row_key) {
        const int64_t n = r0 + r;
        if (p.shift == 24 || (key >> (p.shift + 8)) == (p.row_key[n] >> (p.shift + 8)))
          atomicAdd(&p.row_hist[n * 256 + ((key >> p.shift) & 255u)], 1u);
      } else if (p.shift == 24 || (key >> (p.shift + 8)) == (p.prefix >> (p.shift + 8))) {
        atomicAdd(&hist[(key >> p.shift) & 255u], 1ull);
      }
    }
    __syncthreads();
    if (pass == Pass::Histogram) continue;
    const int64_t m = m0 + lane;
    for (int i = 0; i < 4; ++i) {
      const int r = warp + 8 * i;
      const int64_t n = r0 + r;
      const uint32_t key = K[r][lane];
      const bool live = n < N && m < M && key != 0;
      const uint32_t T = p.row_key ? p.row_key[n < N ? n : 0] : p.T;
      const unsigned above = __ballot_sync(FULL_MASK, live && key > T);
      const unsigned ties = __ballot_sync(FULL_MASK, live && key == T);
      if (pass == Pass::Count) {
        if (lane == 0) {
          gt[r] += __popc(above);
          tie_fill[r] += __popc(ties);
        }
      } else {
        const unsigned below = (1u << lane) - 1u;
        const int tie_rank = tie_fill[r] + __popc(ties & below);
        const bool tie_kept = live && key == T && tie_rank < p.keep_eq[n < N ? n : 0];
        const unsigned kept = above | __ballot_sync(FULL_MASK, tie_kept);
        if ((kept >> lane) & 1u) {
          const int64_t at = p.row_ptr[n] + fill[r] + __popc(kept & below);
          float v;
          memcpy(&v, &key, 4);
          p.vals[at] = v;
          p.idx[at] = int(m);
        }
        __syncwarp();
        if (lane == 0) {
          fill[r] += __popc(kept);
          tie_fill[r] += __popc(ties);
        }
      }
      __syncwarp();
    }
  }
  __syncthreads();
  if (pass == Pass::Histogram) {
    if (!p.row_key && hist[tid]) atomicAdd(&p.hist[tid], hist[tid]);
  } else if (pass == Pass::Count && tid < TR && r0 + tid < N) {
    p.gt[r0 + tid] = gt[tid];
    p.eq[r0 + tid] = tie_fill[tid];
  }
}

// One CTA per (row, level): level lv < nw decodes the latents below widths[lv], level nw all.
__global__ void decode_levels_kernel(const int64_t* __restrict__ row_ptr, const float* __restrict__ vals,
                                     const int* __restrict__ idx, const float* __restrict__ norm,
                                     const int64_t* __restrict__ widths, int nw, const float* __restrict__ W_dec,
                                     const float* __restrict__ b_dec, const float* __restrict__ x, int64_t N, int64_t M,
                                     int64_t D, float* __restrict__ gout, double* __restrict__ se) {
  __shared__ double scratch[32];
  const int64_t n = blockIdx.x, lv = blockIdx.y;
  const int64_t width = lv < nw ? widths[lv] : M;
  double q = 0;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    float o = b_dec[d];
    for (int64_t j = row_ptr[n]; j < row_ptr[n + 1]; ++j) {
      const int64_t m = idx[j];
      if (m >= width) continue;
      o += (vals[j] / norm[m]) * W_dec[m * D + d];
    }
    const float e = o - x[n * D + d];
    q += double(e) * e;
    gout[(lv * N + n) * D + d] = float(2.0 * e / double(N));
  }
  q = block_sum_f64(q, scratch);
  if (threadIdx.x == 0) se[lv * N + n] = q;
}

// The output gradient entry (n, m) sees: full width plus every prefix containing m.
__device__ __forceinline__ double gsum(const float* gout, const int64_t* widths, int nw, int64_t N, int64_t D, int64_t n,
                                       int64_t m, int64_t d) {
  double v = gout[(int64_t(nw) * N + n) * D + d];
  for (int lv = 0; lv < nw; ++lv)
    if (m < widths[lv]) v += gout[(int64_t(lv) * N + n) * D + d];
  return v;
}

__global__ void entry_grad_kernel(const int* __restrict__ row_of, const int* __restrict__ idx, int64_t nnz,
                                  const float* __restrict__ gout, const int64_t* __restrict__ widths, int nw, int64_t N,
                                  const float* __restrict__ W_dec, int64_t D, float* __restrict__ gh) {
  const int64_t j = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (j >= nnz) return;
  const int64_t n = row_of[j], m = idx[j];
  double v = 0;
  for (int64_t d = lane; d < D; d += 32) v += gsum(gout, widths, nw, N, D, n, m, d) * W_dec[m * D + d];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
  if (lane == 0) gh[j] = float(v);
}

__global__ void latent_grad_kernel(const int64_t* __restrict__ start, const int* __restrict__ slots,
                                   const int* __restrict__ row_of, const float* __restrict__ gh, const float* __restrict__ vals,
                                   const float* __restrict__ norm, const float* __restrict__ xin, const float* __restrict__ gout,
                                   const int64_t* __restrict__ widths, int nw, int64_t N, int64_t D, double ls,
                                   float* __restrict__ g_W_enc, float* __restrict__ g_b_enc, float* __restrict__ g_W_dec) {
  const int64_t m = blockIdx.x;
  if (threadIdx.x == 0) {
    double gb = 0;
    for (int64_t p = start[m]; p < start[m + 1]; ++p) gb += gh[slots[p]];
    g_b_enc[m] += float(ls * gb);
  }
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    double ae = 0, ad = 0;
    for (int64_t p = start[m]; p < start[m + 1]; ++p) {
      const int64_t j = slots[p], n = row_of[j];
      ae += double(gh[j]) * xin[n * D + d];
      ad += (double(vals[j]) / norm[m]) * gsum(gout, widths, nw, N, D, n, m, d);
    }
    g_W_enc[m * D + d] += float(ls * ae);
    g_W_dec[m * D + d] += float(ls * ad);
  }
}

__global__ void bdec_grad_kernel(const int64_t* __restrict__ row_ptr, const int* __restrict__ idx, const float* __restrict__ gh,
                                 const float* __restrict__ gout, int nw, const float* __restrict__ W_enc, int64_t N, int64_t D,
                                 bool apply_b_dec, double ls, float* __restrict__ g_b_dec) {
  const int64_t d = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (d >= D) return;
  double t = 0;
  for (int64_t n = 0; n < N; ++n) {
    for (int lv = 0; lv <= nw; ++lv) t += gout[(int64_t(lv) * N + n) * D + d];
    for (int64_t j = row_ptr[n]; apply_b_dec && j < row_ptr[n + 1]; ++j) t -= double(gh[j]) * W_enc[int64_t(idx[j]) * D + d];
  }
  g_b_dec[d] += float(ls * t);
}


// AuxK (CPU twin: add_auxk in native/cpu/batchtopk_step.cpp). Scores S[r, j] = h·n of dead
// latent dl[j] in row r0 + r, tiled like the main selection (one TR x TL tile per CTA: grid x over
// the dead latents, y over the rows); then row_topk picks per row the top k_aux by value, ties to
// the lower latent. The selection is a CSR of k_aux entries per row that the main path's decode
// and gradient kernels take as is.
__global__ void __launch_bounds__(256) auxk_scores_kernel(const float* __restrict__ xin, const float* __restrict__ W_enc,
                                                          const float* __restrict__ b_enc, const float* __restrict__ norm,
                                                          const int* __restrict__ dl, int64_t nd, int64_t r0, int64_t rows,
                                                          int64_t D, float* __restrict__ S) {
  __shared__ float As[TR][TK + 1];
  __shared__ float Bs[TL][TK + 1];
  const int64_t j0 = int64_t(blockIdx.x) * TL, t0 = int64_t(blockIdx.y) * TR;
  const int col = threadIdx.x % TL, rg = threadIdx.x / TL;
  float acc[4];
  tile_preact(As, Bs, xin + r0 * D, rows, D, t0, [&](int r) { return j0 + r < nd ? W_enc + int64_t(dl[j0 + r]) * D : nullptr; },
              acc);
  const int64_t j = j0 + col;
  if (j >= nd) return;
  const int64_t m = dl[j];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t r = t0 + rg + 8 * i;
    if (r < rows) S[r * nd + j] = (acc[i] + b_enc[m]) * norm[m];
  }
}

// AuxK's target, x − out of the full decode, from its output gradient 2 (out − x) / N.
__global__ void auxk_residual_kernel(const float* __restrict__ gout, int64_t n, double N, float* __restrict__ resid) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < n) resid[i] = float(-double(gout[i]) * N / 2.0);
}

}  // namespace

BatchTopKLossesDev batchtopk_step(const BatchTopKStepArgs& a) {
  const int64_t N = a.x.dim(0), D = a.w_enc.dim(1), M = a.w_enc.dim(0);
  SPX_CHECK(N >= 1, Value, "batchtopk_step needs at least one row");
  SPX_CHECK(a.k > 0, Value, "batchtopk k must be > 0, got " + std::to_string(a.k));
  for (int64_t wd : a.widths)
    SPX_CHECK(wd >= 1 && wd < M, Value, "matryoshka widths must be in [1, num_latents), got " + std::to_string(wd));
  for (size_t i = 1; i < a.widths.size(); ++i)
    SPX_CHECK(a.widths[i] > a.widths[i - 1], Value, "matryoshka widths must be strictly increasing");
  if (a.per_row)
    SPX_CHECK(a.k == std::floor(a.k) && a.k >= 1 && a.k <= double(M), Value,
              "topk k must be an integer in [1, num_latents], got " + std::to_string(a.k));
  const int64_t kk = a.per_row ? int64_t(a.k) : std::min<int64_t>(int64_t(std::floor(a.k * double(N))), N * M);
  SPX_CHECK(kk >= 1, Value, "batchtopk keeps floor(k * rows) = 0 latents; k=" + std::to_string(a.k) + " rows=" + std::to_string(N));
  Session ses;
  cudaStream_t s = ses.stream();
  DeviceTensor dx = upload(a.x, s), dwe = upload(a.w_enc, s), dbe = upload(a.b_enc, s), dwd = upload(a.w_dec, s),
               dbd = upload(a.b_dec, s);
  auto F = [](const DeviceTensor& t) { return static_cast<const float*>(t.data()); };
  const float *x = F(dx), *W_enc = F(dwe), *b_enc = F(dbe), *W_dec = F(dwd), *b_dec = F(dbd);
  GradTarget gwe(a.g_w_enc, s), gbe(a.g_b_enc, s), gwd(a.g_w_dec, s), gbd(a.g_b_dec, s);
  GradTarget fired = a.did_fire.defined() ? GradTarget(a.did_fire, s) : GradTarget();
  DeviceBuffer xin(size_t(N * D) * 4, s), norm(size_t(M) * 4, s);
  encoder_input_dev(x, a.apply_b_dec ? b_dec : nullptr, N, D, xin.as<float>(), s);
  latent_prep_dev(W_dec, nullptr, M, D, norm.as<float>(), nullptr, s);

  // Radix select of the kk-th largest positive key.
  const unsigned blocks = ceil_div(N, TR);
  SelectDev p{};
  p.xin = xin.as<float>(), p.W_enc = W_enc, p.b_enc = b_enc, p.norm = norm.as<float>(), p.N = N, p.M = M, p.D = D;
  DeviceBuffer hist(256 * 8, s);
  p.hist = hist.as<unsigned long long>();
  int64_t need = kk, positives = -1;
  uint32_t prefix = 0;
  DeviceBuffer gt(size_t(N) * 4, s), eq(size_t(N) * 4, s), keep_eq(size_t(N) * 4, s), row_ptr(size_t(N + 1) * 8, s);
  std::vector<int64_t> hrow(size_t(N + 1), 0);
  // Per row: the same radix select, one histogram and prefix per row.
  DeviceBuffer row_key(a.per_row ? size_t(N) * 4 : 4, s);
  std::vector<uint32_t> hkey(a.per_row ? size_t(N) : 0, 0);
  double row_min_kept = 0;
  if (a.per_row) {
    DeviceBuffer row_hist(size_t(N) * 256 * 4, s);
    p.row_key = row_key.as<uint32_t>(), p.row_hist = row_hist.as<unsigned>();
    std::vector<int64_t> rneed(size_t(N), kk);
    std::vector<unsigned> h(size_t(N) * 256);
    CUDA_CHECK(cudaMemcpyAsync(row_key.get(), hkey.data(), size_t(N) * 4, cudaMemcpyHostToDevice, s));
    for (int shift = 24; shift >= 0; shift -= 8) {
      CUDA_CHECK(cudaMemsetAsync(row_hist.get(), 0, size_t(N) * 256 * 4, s));
      p.shift = shift;
      SPX_LAUNCH(blocks, 256, 0, s, batchtopk_select_kernel)(p, Pass::Histogram);
      CUDA_CHECK_LAUNCH();
      CUDA_CHECK(cudaMemcpyAsync(h.data(), row_hist.get(), h.size() * 4, cudaMemcpyDeviceToHost, s));
      ses.sync();
      for (int64_t n = 0; n < N; ++n) {
        const unsigned* hn = h.data() + n * 256;
        if (shift == 24) {
          int64_t pos = 0;
          for (int b = 0; b < 256; ++b) pos += hn[b];
          hrow[size_t(n + 1)] = std::min(kk, pos);
          rneed[size_t(n)] = hrow[size_t(n + 1)];
        }
        if (rneed[size_t(n)] == 0) continue;
        int bin = 255;
        for (; bin > 0 && int64_t(hn[bin]) < rneed[size_t(n)]; --bin) rneed[size_t(n)] -= int64_t(hn[bin]);
        hkey[size_t(n)] |= uint32_t(bin) << shift;
      }
      CUDA_CHECK(cudaMemcpyAsync(row_key.get(), hkey.data(), size_t(N) * 4, cudaMemcpyHostToDevice, s));
      ses.sync();
    }
    // rneed = the ties at the row's key to keep (latent order); an empty row keeps nothing.
    std::vector<int> hkeep(static_cast<size_t>(N));
    bool any = false;
    for (int64_t n = 0; n < N; ++n) {
      hkeep[size_t(n)] = int(rneed[size_t(n)]);
      if (hrow[size_t(n + 1)] == 0) hkey[size_t(n)] = 0xFFFFFFFFu;  // NaN bits: no positive key is above or equal
      else {
        float t;
        memcpy(&t, &hkey[size_t(n)], 4);
        row_min_kept = any ? std::min(row_min_kept, double(t)) : double(t);
        any = true;
      }
      hrow[size_t(n + 1)] += hrow[size_t(n)];
    }
    CUDA_CHECK(cudaMemcpyAsync(row_key.get(), hkey.data(), size_t(N) * 4, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemcpyAsync(keep_eq.get(), hkeep.data(), size_t(N) * 4, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemcpyAsync(row_ptr.get(), hrow.data(), size_t(N + 1) * 8, cudaMemcpyHostToDevice, s));
    ses.sync();
    positives = hrow[size_t(N)];
  }
  for (int shift = 24; !a.per_row && shift >= 0; shift -= 8) {
    CUDA_CHECK(cudaMemsetAsync(hist.get(), 0, 256 * 8, s));
    p.prefix = prefix, p.shift = shift;
    SPX_LAUNCH(blocks, 256, 0, s, batchtopk_select_kernel)(p, Pass::Histogram);
    CUDA_CHECK_LAUNCH();
    unsigned long long h[256];
    CUDA_CHECK(cudaMemcpyAsync(h, hist.get(), sizeof h, cudaMemcpyDeviceToHost, s));
    ses.sync();
    if (positives < 0) {
      positives = 0;
      for (unsigned long long c : h) positives += int64_t(c);
      need = std::min(need, positives);
      if (need == 0) break;
    }
    int bin = 255;
    for (; bin > 0 && int64_t(h[bin]) < need; --bin) need -= int64_t(h[bin]);
    prefix |= uint32_t(bin) << shift;
  }
  const int64_t nnz = a.per_row ? positives : positives > 0 ? std::min(kk, positives) : 0;
  // need = ties at T to keep; T = prefix (when anything is kept).
  if (a.per_row) {
  } else if (nnz > 0) {
    p.T = prefix, p.gt = gt.as<int>(), p.eq = eq.as<int>();
    SPX_LAUNCH(blocks, 256, 0, s, batchtopk_select_kernel)(p, Pass::Count);
    CUDA_CHECK_LAUNCH();
    std::vector<int> hgt(static_cast<size_t>(N)), heq(static_cast<size_t>(N)), hkeep(static_cast<size_t>(N));
    CUDA_CHECK(cudaMemcpyAsync(hgt.data(), gt.get(), size_t(N) * 4, cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaMemcpyAsync(heq.data(), eq.get(), size_t(N) * 4, cudaMemcpyDeviceToHost, s));
    ses.sync();
    int64_t ties_before = 0;
    for (int64_t n = 0; n < N; ++n) {
      hkeep[size_t(n)] = int(std::clamp<int64_t>(need - ties_before, 0, heq[size_t(n)]));
      ties_before += heq[size_t(n)];
      hrow[size_t(n + 1)] = hrow[size_t(n)] + hgt[size_t(n)] + hkeep[size_t(n)];
    }
    SPX_CHECK(hrow[size_t(N)] == nnz, Device, "batchtopk selection kept " + std::to_string(hrow[size_t(N)]) + " of " + std::to_string(nnz));
    CUDA_CHECK(cudaMemcpyAsync(keep_eq.get(), hkeep.data(), size_t(N) * 4, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemcpyAsync(row_ptr.get(), hrow.data(), size_t(N + 1) * 8, cudaMemcpyHostToDevice, s));
    ses.sync();  // the host sources go at the end of this scope
  } else {
    CUDA_CHECK(cudaMemcpyAsync(row_ptr.get(), hrow.data(), size_t(N + 1) * 8, cudaMemcpyHostToDevice, s));
    ses.sync();
  }
  const size_t nz = size_t(std::max<int64_t>(nnz, 1));
  DeviceBuffer vals(nz * 4, s), idx(nz * 4, s), row_of(nz * 4, s), gh(nz * 4, s);
  if (nnz > 0) {
    p.keep_eq = keep_eq.as<int>(), p.row_ptr = row_ptr.as<int64_t>(), p.vals = vals.as<float>(), p.idx = idx.as<int>();
    SPX_LAUNCH(blocks, 256, 0, s, batchtopk_select_kernel)(p, Pass::Write);
    CUDA_CHECK_LAUNCH();
  }
  row_of_dev(row_ptr.as<int64_t>(), N, row_of.as<int>(), s);
  mark_fired_dev(vals.as<float>(), idx.as<int>(), nnz, fired.int_ptr(), s);

  const int nw = int(a.widths.size());
  DeviceBuffer widths(size_t(std::max(nw, 1)) * 8, s);
  if (nw) CUDA_CHECK(cudaMemcpyAsync(widths.get(), a.widths.data(), size_t(nw) * 8, cudaMemcpyHostToDevice, s));
  DeviceBuffer gout(size_t((nw + 1) * N * D) * 4, s), se(size_t((nw + 1) * N) * 8, s);
  SPX_LAUNCH(dim3(unsigned(N), unsigned(nw + 1)), 128, 0, s, decode_levels_kernel)(
      row_ptr.as<int64_t>(), vals.as<float>(), idx.as<int>(), norm.as<float>(), widths.as<int64_t>(), nw, W_dec, b_dec, x, N,
      M, D, gout.as<float>(), se.as<double>());
  CUDA_CHECK_LAUNCH();
  if (nnz > 0) {
    SPX_LAUNCH(ceil_div(nnz * 32, 256), 256, 0, s, entry_grad_kernel)(row_of.as<int>(), idx.as<int>(), nnz, gout.as<float>(),
                                                                      widths.as<int64_t>(), nw, N, W_dec, D, gh.as<float>());
    CUDA_CHECK_LAUNCH();
  }
  {
    Csr c = build_csr(idx.as<int>(), nnz, M, s);
    SPX_LAUNCH(unsigned(M), 128, 0, s, latent_grad_kernel)(c.start.as<int64_t>(), c.slots.as<int>(), row_of.as<int>(),
                                                           gh.as<float>(), vals.as<float>(), norm.as<float>(), xin.as<float>(),
                                                           gout.as<float>(), widths.as<int64_t>(), nw, N, D, a.loss_scale,
                                                           gwe.ptr(), gbe.ptr(), gwd.ptr());
    CUDA_CHECK_LAUNCH();
    ses.sync();
  }
  SPX_LAUNCH(ceil_div(D, 128), 128, 0, s, bdec_grad_kernel)(row_ptr.as<int64_t>(), idx.as<int>(), gh.as<float>(),
                                                            gout.as<float>(), nw, W_enc, N, D, a.apply_b_dec, a.loss_scale, gbd.ptr());
  CUDA_CHECK_LAUNCH();
  double aux = 0;
  if (a.dead.defined() && a.aux_coefficient > 0) {
    const std::vector<int> dl = dead_list(a.dead, s);
    const int64_t nd = int64_t(dl.size()), half = D / 2;
    if (nd > 0) {
      SPX_CHECK(half >= 1, Value, "AuxK needs d_in >= 2 (k_aux = d_in / 2), got d_in=" + std::to_string(D));
      const double scale = std::min(double(nd) / double(half), 1.0), cs = a.aux_coefficient * scale;
      const int64_t ka = std::min(half, nd), na = N * ka;
      DeviceBuffer ddl(size_t(nd) * 4, s), resid(size_t(N * D) * 4, s), avals(size_t(na) * 4, s), aidx(size_t(na) * 4, s),
          arow_ptr(size_t(N + 1) * 8, s), arow_of(size_t(na) * 4, s), agh(size_t(na) * 4, s), agout(size_t(N * D) * 4, s),
          ase(size_t(N) * 8, s);
      CUDA_CHECK(cudaMemcpyAsync(ddl.get(), dl.data(), size_t(nd) * 4, cudaMemcpyHostToDevice, s));
      std::vector<int64_t> arp(size_t(N + 1));
      for (int64_t n = 0; n <= N; ++n) arp[size_t(n)] = n * ka;
      CUDA_CHECK(cudaMemcpyAsync(arow_ptr.get(), arp.data(), size_t(N + 1) * 8, cudaMemcpyHostToDevice, s));
      SPX_LAUNCH(ceil_div(N * D, 256), 256, 0, s, auxk_residual_kernel)(gout.as<float>() + nw * N * D, N * D, double(N), resid.as<float>());
      CUDA_CHECK_LAUNCH();
      // Rows in chunks, so the scores stay within 2^24 floats (and the grid's y within 65535 tiles).
      const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>({N, (int64_t(1) << 24) / nd, int64_t(65535) * TR}));
      DeviceBuffer S(size_t(chunk * nd) * 4, s);
      // row_topk's preconditions: k <= L holds (ka = min(D / 2, nd)), the dead latents are unique.
      SPX_CHECK(ka <= ROW_TOPK_MAX_K, Value,
                "AuxK on cuda keeps k_aux = d_in / 2 <= " + std::to_string(ROW_TOPK_MAX_K) + " per row, got d_in=" + std::to_string(D));
      RowTopkParams rp{};
      rp.stride = nd, rp.L = int(nd), rp.idx_map = ddl.as<int>(), rp.k = int(ka), rp.vals = S.as<float>();
      for (int64_t r0 = 0; r0 < N; r0 += chunk) {
        const int64_t rows = std::min(chunk, N - r0);
        SPX_LAUNCH(dim3(ceil_div(nd, TL), ceil_div(rows, TR)), 256, 0, s, auxk_scores_kernel)(
            xin.as<float>(), W_enc, b_enc, norm.as<float>(), ddl.as<int>(), nd, r0, rows, D, S.as<float>());
        CUDA_CHECK_LAUNCH();
        rp.out_v = avals.as<float>() + r0 * ka, rp.out_i = aidx.as<int>() + r0 * ka;
        row_topk(rp, rows, s);
      }
      row_of_dev(arow_ptr.as<int64_t>(), N, arow_of.as<int>(), s);
      // The main path's kernels with no prefixes, target = the residual and scale c·scale.
      SPX_LAUNCH(dim3(unsigned(N), 1u), 128, 0, s, decode_levels_kernel)(arow_ptr.as<int64_t>(), avals.as<float>(), aidx.as<int>(),
                                                                        norm.as<float>(), widths.as<int64_t>(), 0, W_dec, b_dec,
                                                                        resid.as<float>(), N, M, D, agout.as<float>(), ase.as<double>());
      CUDA_CHECK_LAUNCH();
      SPX_LAUNCH(ceil_div(na * 32, 256), 256, 0, s, entry_grad_kernel)(arow_of.as<int>(), aidx.as<int>(), na, agout.as<float>(),
                                                                       widths.as<int64_t>(), 0, N, W_dec, D, agh.as<float>());
      CUDA_CHECK_LAUNCH();
      {
        Csr c = build_csr(aidx.as<int>(), na, M, s);
        SPX_LAUNCH(unsigned(M), 128, 0, s, latent_grad_kernel)(c.start.as<int64_t>(), c.slots.as<int>(), arow_of.as<int>(),
                                                               agh.as<float>(), avals.as<float>(), norm.as<float>(), xin.as<float>(),
                                                               agout.as<float>(), widths.as<int64_t>(), 0, N, D, a.loss_scale * cs,
                                                               gwe.ptr(), gbe.ptr(), gwd.ptr());
        CUDA_CHECK_LAUNCH();
        ses.sync();
      }
      SPX_LAUNCH(ceil_div(D, 128), 128, 0, s, bdec_grad_kernel)(arow_ptr.as<int64_t>(), aidx.as<int>(), agh.as<float>(),
                                                                agout.as<float>(), 0, W_enc, N, D, a.apply_b_dec, a.loss_scale * cs,
                                                                gbd.ptr());
      CUDA_CHECK_LAUNCH();
      std::vector<double> hase(static_cast<size_t>(N));
      CUDA_CHECK(cudaMemcpyAsync(hase.data(), ase.get(), size_t(N) * 8, cudaMemcpyDeviceToHost, s));
      ses.sync();
      for (double v : hase) aux += v;
      aux *= cs / double(N);
    }
  }
  for (GradTarget* g : {&gwe, &gbe, &gwd, &gbd, &fired}) g->write_back();
  std::vector<double> hse(size_t((nw + 1) * N));
  CUDA_CHECK(cudaMemcpyAsync(hse.data(), se.get(), hse.size() * 8, cudaMemcpyDeviceToHost, s));
  ses.sync();
  BatchTopKLossesDev L;
  L.kept = nnz;
  if (a.per_row) {
    L.min_kept = row_min_kept;  // the smallest of the rows' threshold keys
  } else if (nnz > 0) {
    float t;
    memcpy(&t, &prefix, 4);
    L.min_kept = t;  // the smallest kept value is the threshold key itself
  }
  for (int64_t n = 0; n < N; ++n) {
    L.mse += hse[size_t(nw * N + n)] / double(N);
    for (int lv = 0; lv < nw; ++lv) L.inner += hse[size_t(lv * N + n)] / double(N);
  }
  L.aux = aux;
  L.loss = L.mse + L.inner + L.aux;
  return L;
}

}  // namespace cuda
}  // namespace sparsify
