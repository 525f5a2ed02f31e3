// Training step (loss + gradients) of ReLU + L1 and JumpReLU coders on the device. CUDA twin of
// native/cpu/threshold_step.cpp (formulas in native/cpu/threshold_step.h); float64 reference:
// packages/core/src/kinds/reference.ts. Passes, each a kernel on the stream:
//   1. x' = x - b_dec (x when apply_b_dec is off), decoder row norms, theta = exp(log_threshold);
//   2. the kept latents in CSR form (threshold_encode.cu: count, row offsets, write; never N x M);
//   3. decode + residual per row: g_out = 2 (out - x) / N, squared error per row (double);
//   4. per kept entry: g_h = <g_out[n], W_dec[m]> + the sparsity term (one warp per entry);
//      relu with lp_norm p != 1 first takes each row's ||f ⊙ n||_p (one warp per row), and the
//      entry's term carries w_j = (u_j / ||u||_p)^(p-1), kept for pass 6;
//   5. jumprelu: the threshold gradient over every (row, latent) with |h - t| < eps/2, from two
//      f32 tile products (h and g_out W_dec^T) kept in shared memory; per-CTA partial sums per
//      latent in double, added in CTA order (deterministic);
//   6. per latent (stable latent-sorted CSR, sae_backward.cu build_csr): W_enc, b_enc, W_dec;
//      per column: b_dec. Gradients are added, times loss_scale, into the grad buffers.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/errors.h"
#include "cuda/common.cuh"
#include "cuda/cuda_context.h"
#include "cuda/device_ops.h"
#include "cuda/threshold_device.h"
#include "cuda/threshold_step_device.h"

namespace sparsify {
namespace cuda {
namespace {

constexpr int TR = 32, TL = 32, TK = 32;

__global__ void latent_prep_kernel(const float* __restrict__ W_dec, const float* __restrict__ log_t, int64_t M, int64_t D,
                                   float* __restrict__ norm, float* __restrict__ theta) {
  const int64_t m = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (m >= M) return;
  double q = 0;
  for (int64_t d = 0; d < D; ++d) q += double(W_dec[m * D + d]) * W_dec[m * D + d];
  norm[m] = float(sqrt(q));
  if (log_t) theta[m] = expf(log_t[m]);
}

__global__ void mark_fired_kernel(const float* __restrict__ vals, const int* __restrict__ idx, int64_t nnz,
                                  int* __restrict__ did_fire) {
  const int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (j < nnz && vals[j] > 0.f) did_fire[idx[j]] = 1;
}

__global__ void row_of_kernel(const int64_t* __restrict__ row_ptr, int64_t N, int* __restrict__ row_of) {
  const int64_t n = blockIdx.x;
  if (n >= N) return;
  for (int64_t j = row_ptr[n] + threadIdx.x; j < row_ptr[n + 1]; j += blockDim.x) row_of[j] = int(n);
}

// One CTA per row: out = b_dec + sum_j vals[j] W_dec[idx[j]] (u = vals[j] * (scale ? 1 / scale[m] : 1)),
// g_out = 2 (out - x) / N, se[n] = sum (out - x)^2 in double.
__global__ void decode_residual_kernel(const int64_t* __restrict__ row_ptr, const float* __restrict__ vals,
                                       const int* __restrict__ idx, const float* __restrict__ W_dec,
                                       const float* __restrict__ b_dec, const float* __restrict__ x, int64_t N, int64_t D,
                                       float* __restrict__ gout, double* __restrict__ se) {
  __shared__ double scratch[32];
  const int64_t n = blockIdx.x;
  double q = 0;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    float o = b_dec[d];
    for (int64_t j = row_ptr[n]; j < row_ptr[n + 1]; ++j) o += vals[j] * W_dec[int64_t(idx[j]) * D + d];
    const float e = o - x[n * D + d];
    q += double(e) * e;
    gout[n * D + d] = float(2.0 * e / double(N));
  }
  q = block_sum_f64(q, scratch);
  if (threadIdx.x == 0) se[n] = q;
}

// One warp per row: rn[n] = ||u||_p of its kept u_j = f_j n_j, scaled by the largest u_j.
__global__ void row_lp_norm_kernel(const int64_t* __restrict__ row_ptr, const float* __restrict__ vals, const int* __restrict__ idx,
                                   const float* __restrict__ norm, int64_t N, double p, double* __restrict__ rn) {
  const int64_t n = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (n >= N) return;
  double mx = 0;
  for (int64_t j = row_ptr[n] + lane; j < row_ptr[n + 1]; j += 32) mx = fmax(mx, fabs(double(vals[j]) * norm[idx[j]]));
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) mx = fmax(mx, __shfl_xor_sync(FULL_MASK, mx, o));
  double acc = 0;
  if (mx > 0)
    for (int64_t j = row_ptr[n] + lane; j < row_ptr[n + 1]; j += 32) acc += pow(fabs(double(vals[j]) * norm[idx[j]]) / mx, p);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(FULL_MASK, acc, o);
  if (lane == 0) rn[n] = mx > 0 ? mx * pow(acc, 1.0 / p) : 0.0;
}

// One warp per kept entry: g_h and its sparsity term (rn, lp_w: relu with p != 1, else null).
__global__ void entry_grad_kernel(const int* __restrict__ row_of, const float* __restrict__ vals, const int* __restrict__ idx,
                                  int64_t nnz, const float* __restrict__ gout, const float* __restrict__ W_dec,
                                  const float* __restrict__ norm, int64_t D, StepMath sm, const double* __restrict__ rn,
                                  float* __restrict__ gh, double* __restrict__ sp, double* __restrict__ lp_w) {
  const int64_t j = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (j >= nnz) return;
  const int64_t n = row_of[j], m = idx[j];
  double gu = 0;
  for (int64_t d = lane; d < D; d += 32) gu += double(gout[n * D + d]) * W_dec[m * D + d];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) gu += __shfl_xor_sync(FULL_MASK, gu, o);
  if (lane != 0) return;
  const double f = vals[j], nm = norm[m];
  double s = 0;
  if (rn) {
    // sum_j c u_j w_j over the row = c ||u||_p.
    const double u = f * nm, r = rn[n];
    const double q = r > 0 && u > 0 ? pow(u / r, sm.p - 1) : 0.0;
    lp_w[j] = q;
    s = sm.c * u * q;
    gu += sm.c * q * nm;
  } else if (!sm.jumprelu) {
    s = sm.c * f * nm;
    gu += sm.c * nm;
  } else if (sm.tanh_l0) {
    const double t = tanh(sm.tanh_scale * f * nm);
    s = sm.c * t;
    gu += sm.c * (1 - t * t) * sm.tanh_scale * nm;
  } else {
    s = sm.c;
  }
  gh[j] = float(gu);
  sp[j] = s;
}

// JumpReLU threshold gradient: CTA = 32 rows; per 32-latent tile, h = x' W_enc^T + b_enc and
// gu = g_out W_dec^T in shared memory; part[block, m] = sum over the CTA's rows (row order).
__global__ void __launch_bounds__(256) threshold_grad_kernel(const float* __restrict__ xin, const float* __restrict__ gout,
                                                               const float* __restrict__ W_enc, const float* __restrict__ b_enc,
                                                               const float* __restrict__ W_dec, const float* __restrict__ theta,
                                                               const float* __restrict__ norm, int64_t N, int64_t M, int64_t D,
                                                               StepMath sm, double* __restrict__ part) {
  __shared__ float Xs[TR][TK + 1], Gs[TR][TK + 1], Es[TL][TK + 1], Ds[TL][TK + 1];
  __shared__ double C[TR][TL + 1];
  const int64_t r0 = int64_t(blockIdx.x) * TR;
  const int tid = threadIdx.x, col = tid % TL, rg = tid / TL;
  for (int64_t m0 = 0; m0 < M; m0 += TL) {
    float h[4] = {0.f, 0.f, 0.f, 0.f}, gu[4] = {0.f, 0.f, 0.f, 0.f};
    for (int64_t k0 = 0; k0 < D; k0 += TK) {
      __syncthreads();
      for (int e = tid; e < TR * TK; e += 256) {
        const int r = e / TK, k = e % TK;
        const int64_t n = r0 + r, d = k0 + k, m = m0 + r;
        const bool rd = n < N && d < D, md = m < M && d < D;
        Xs[r][k] = rd ? xin[n * D + d] : 0.f;
        Gs[r][k] = rd ? gout[n * D + d] : 0.f;
        Es[r][k] = md ? W_enc[m * D + d] : 0.f;
        Ds[r][k] = md ? W_dec[m * D + d] : 0.f;
      }
      __syncthreads();
      for (int k = 0; k < TK; ++k) {
        const float e = Es[col][k], dd = Ds[col][k];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          h[i] = fmaf(Xs[rg + 8 * i][k], e, h[i]);
          gu[i] = fmaf(Gs[rg + 8 * i][k], dd, gu[i]);
        }
      }
    }
    const int64_t m = m0 + col;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = rg + 8 * i;
      double v = 0;
      if (r0 + r < N && m < M) {
        const double th = theta[m], hv = double(h[i] + b_enc[m]);
        const double z = (hv - th) / sm.eps;
        if (z > -0.5 && z < 0.5) {
          double gf = gu[i];
          if (sm.tanh_l0) {
            const double tt = hv > th ? tanh(sm.tanh_scale * hv * norm[m]) : 0.0;
            gf += sm.c * (1 - tt * tt) * sm.tanh_scale * norm[m];
          } else {
            v += -(1.0 / sm.eps) * sm.c;
          }
          v += -(th / sm.eps) * gf;
        }
      }
      C[r][col] = v;
    }
    __syncthreads();
    if (tid < TL && m0 + tid < M) {
      double t = 0;
      for (int r = 0; r < TR; ++r) t += C[r][tid];
      part[int64_t(blockIdx.x) * M + m0 + tid] = t;
    }
  }
}

__global__ void threshold_grad_reduce_kernel(const double* __restrict__ part, int64_t nblocks, int64_t M,
                                             const float* __restrict__ theta, double ls, float* __restrict__ g_log_t) {
  const int64_t m = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (m >= M) return;
  double t = 0;
  for (int64_t b = 0; b < nblocks; ++b) t += part[b * M + m];
  g_log_t[m] += float(ls * t * theta[m]);
}

// One CTA per latent: its entries in row order (stable CSR) give W_enc, b_enc, W_dec gradients.
__global__ void latent_grad_kernel(const int64_t* __restrict__ start, const int* __restrict__ slots,
                                   const int* __restrict__ row_of, const float* __restrict__ gh, const float* __restrict__ vals,
                                   const float* __restrict__ xin, const float* __restrict__ gout,
                                   const float* __restrict__ W_dec, const float* __restrict__ norm, int64_t D, StepMath sm,
                                   const double* __restrict__ lp_w, double ls, float* __restrict__ g_W_enc,
                                   float* __restrict__ g_b_enc, float* __restrict__ g_W_dec) {
  const int64_t m = blockIdx.x;
  const double nm = norm[m];
  double gb = 0, gnorm = 0;
  for (int64_t p = start[m]; p < start[m + 1]; ++p) {
    const int64_t j = slots[p];
    const double f = vals[j];
    gb += gh[j];
    if (lp_w) gnorm += sm.c * lp_w[j] * f;
    else if (!sm.jumprelu) gnorm += sm.c * f;
    else if (sm.tanh_l0) {
      const double t = tanh(sm.tanh_scale * f * nm);
      gnorm += sm.c * (1 - t * t) * sm.tanh_scale * f;
    }
  }
  if (threadIdx.x == 0) g_b_enc[m] += float(ls * gb);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    double ae = 0, ad = 0;
    for (int64_t p = start[m]; p < start[m + 1]; ++p) {
      const int64_t j = slots[p], n = row_of[j];
      ae += double(gh[j]) * xin[n * D + d];
      ad += double(vals[j]) * gout[n * D + d];
    }
    g_W_enc[m * D + d] += float(ls * ae);
    g_W_dec[m * D + d] += float(ls * (ad + (nm > 0 ? gnorm * W_dec[m * D + d] / nm : 0.0)));
  }
}

// b_dec: sum_n g_out[n] - sum_j g_h[j] W_enc[idx[j]], one thread per column.
__global__ void bdec_grad_kernel(const int64_t* __restrict__ row_ptr, const int* __restrict__ idx, const float* __restrict__ gh,
                                 const float* __restrict__ gout, const float* __restrict__ W_enc, int64_t N, int64_t D,
                                 bool apply_b_dec, double ls, float* __restrict__ g_b_dec) {
  const int64_t d = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (d >= D) return;
  double t = 0;
  for (int64_t n = 0; n < N; ++n) {
    t += gout[n * D + d];
    for (int64_t j = row_ptr[n]; apply_b_dec && j < row_ptr[n + 1]; ++j) t -= double(gh[j]) * W_enc[int64_t(idx[j]) * D + d];
  }
  g_b_dec[d] += float(ls * t);
}


// JumpReLU's pre-activation loss (CPU twin: add_pre_act in native/cpu/threshold_step.cpp): one
// block per dead latent m = dl[j]; each chunk of rows computes h, and the rows below θ_m add
// their x' into this block's own sx[j] (no other block writes it). Then the latent's gradients
// and its share of b_dec's (gin[j] = g_h-sum · W_enc[m]); loss_of[j] = Σ (θ − h)⁺ · n_m.
__global__ void pre_act_kernel(const float* __restrict__ xin, const float* __restrict__ W_enc, const float* __restrict__ b_enc,
                               const float* __restrict__ W_dec, const float* __restrict__ theta, const float* __restrict__ norm,
                               const int* __restrict__ dl, int64_t N, int64_t D, double c, double ls, double* __restrict__ sx,
                               double* __restrict__ loss_of, double* __restrict__ gin, float* __restrict__ g_W_enc,
                               float* __restrict__ g_b_enc, float* __restrict__ g_log_t, float* __restrict__ g_W_dec) {
  __shared__ unsigned char below[128];
  __shared__ double scratch[32];
  __shared__ double tot[2];
  const int64_t j = blockIdx.x, m = dl[j];
  const float t = theta[m];
  double my_gap = 0, my_cnt = 0;
  for (int64_t r0 = 0; r0 < N; r0 += 128) {
    const int64_t r = r0 + threadIdx.x;
    below[threadIdx.x] = 0;
    if (r < N) {
      float acc = 0;
      for (int64_t d = 0; d < D; ++d) acc += xin[r * D + d] * W_enc[m * D + d];
      const double gap = double(t) - double(acc + b_enc[m]);
      if (gap > 0) {
        my_gap += gap;
        my_cnt += 1;
        below[threadIdx.x] = 1;
      }
    }
    __syncthreads();
    const int64_t rn = N - r0 < 128 ? N - r0 : 128;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
      double v = sx[j * D + d];
      for (int64_t q = 0; q < rn; ++q)
        if (below[q]) v += xin[(r0 + q) * D + d];
      sx[j * D + d] = v;
    }
    __syncthreads();
  }
  my_gap = block_sum_f64(my_gap, scratch);
  if (threadIdx.x == 0) tot[0] = my_gap;
  __syncthreads();
  my_cnt = block_sum_f64(my_cnt, scratch);
  if (threadIdx.x == 0) tot[1] = my_cnt;
  __syncthreads();
  const double gap = tot[0], cnt = tot[1], nm = norm[m], gh = -c * nm;  // d loss / d h, per row below θ
  if (threadIdx.x == 0) {
    loss_of[j] = gap * nm;
    g_b_enc[m] += float(ls * gh * cnt);
    g_log_t[m] += float(ls * c * nm * cnt * double(t));
  }
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    g_W_enc[m * D + d] += float(ls * gh * sx[j * D + d]);
    if (nm > 0) g_W_dec[m * D + d] += float(ls * c * gap * W_dec[m * D + d] / nm);
    gin[j * D + d] = gh * cnt * W_enc[m * D + d];
  }
}

// b_dec's share of the pre-act loss through x' = x − b_dec: −Σ_j gin[j], one thread per column.
__global__ void pre_act_bdec_kernel(const double* __restrict__ gin, int64_t nd, int64_t D, double ls, float* __restrict__ g_b_dec) {
  const int64_t d = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (d >= D) return;
  double v = 0;
  for (int64_t j = 0; j < nd; ++j) v += gin[j * D + d];
  g_b_dec[d] -= float(ls * v);
}

}  // namespace

std::vector<int> dead_list(const Tensor& dead, cudaStream_t s) {
  std::vector<int> mask(size_t(dead.numel())), out;
  if (dead.device() == Device::CUDA) {
    CUDA_CHECK(cudaMemcpyAsync(mask.data(), dead.raw(), mask.size() * 4, cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
  } else {
    std::memcpy(mask.data(), dead.raw(), mask.size() * 4);
  }
  for (size_t m = 0; m < mask.size(); ++m)
    if (mask[m]) out.push_back(int(m));
  return out;
}

void latent_prep_dev(const float* W_dec, const float* log_t, int64_t M, int64_t D, float* norm, float* theta, cudaStream_t s) {
  if (M == 0) return;
  SPX_LAUNCH(ceil_div(M, 128), 128, 0, s, latent_prep_kernel)(W_dec, log_t, M, D, norm, theta);
  CUDA_CHECK_LAUNCH();
}

void mark_fired_dev(const float* vals, const int* idx, int64_t nnz, int* did_fire, cudaStream_t s) {
  if (nnz == 0 || !did_fire) return;
  SPX_LAUNCH(ceil_div(nnz, 256), 256, 0, s, mark_fired_kernel)(vals, idx, nnz, did_fire);
  CUDA_CHECK_LAUNCH();
}

void row_of_dev(const int64_t* row_ptr, int64_t N, int* row_of, cudaStream_t s) {
  if (N == 0) return;
  SPX_LAUNCH(unsigned(N), 128, 0, s, row_of_kernel)(row_ptr, N, row_of);
  CUDA_CHECK_LAUNCH();
}

GradTarget::GradTarget(const Tensor& t, cudaStream_t s) : t_(t), s_(s) {
  if (t.device() == Device::CUDA) {
    ptr_ = t.data<float>();
  } else {
    copy_ = upload_owned(t, s);
    ptr_ = static_cast<float*>(copy_.buf.get());
  }
}

void GradTarget::write_back() {
  if (t_.defined() && t_.device() != Device::CUDA && t_.nbytes())
    CUDA_CHECK(cudaMemcpyAsync(t_.raw(), ptr_, t_.nbytes(), cudaMemcpyDeviceToHost, s_));
}

StepMath step_math(const ThresholdStepArgs& a, int64_t N) {
  StepMath sm;
  sm.jumprelu = a.jumprelu;
  sm.tanh_l0 = a.tanh_l0;
  sm.tanh_scale = a.tanh_scale;
  sm.eps = a.bandwidth;
  sm.c = (a.jumprelu ? a.l0_coefficient : a.l1_coefficient) / double(N);
  sm.p = a.lp_norm;
  return sm;
}

ThresholdStepLossesDev threshold_step(const ThresholdStepArgs& a) {
  const int64_t N = a.x.dim(0), D = a.w_enc.dim(1), M = a.w_enc.dim(0);
  SPX_CHECK(N >= 1, Value, "threshold_step needs at least one row");
  SPX_CHECK(!a.jumprelu || a.bandwidth > 0, Value, "jumprelu bandwidth must be > 0, got " + std::to_string(a.bandwidth));
  SPX_CHECK(a.jumprelu || (std::isfinite(a.lp_norm) && a.lp_norm >= 1), Value,
            "relu lp_norm must be a finite number >= 1, got " + std::to_string(a.lp_norm));
  Session ses;
  cudaStream_t s = ses.stream();
  DeviceTensor dx = upload(a.x, s), dwe = upload(a.w_enc, s), dbe = upload(a.b_enc, s), dwd = upload(a.w_dec, s),
               dbd = upload(a.b_dec, s), dlt;
  if (a.jumprelu) dlt = upload(a.log_threshold, s);
  auto F = [](const DeviceTensor& t) { return static_cast<const float*>(t.data()); };
  const float *x = F(dx), *W_enc = F(dwe), *b_enc = F(dbe), *W_dec = F(dwd), *b_dec = F(dbd);
  GradTarget gwe(a.g_w_enc, s), gbe(a.g_b_enc, s), gwd(a.g_w_dec, s), gbd(a.g_b_dec, s);
  GradTarget glt = a.jumprelu ? GradTarget(a.g_log_threshold, s) : GradTarget();
  GradTarget fired = a.did_fire.defined() ? GradTarget(a.did_fire, s) : GradTarget();

  DeviceBuffer xin(size_t(N * D) * 4, s), norm(size_t(std::max<int64_t>(M, 1)) * 4, s), theta(size_t(std::max<int64_t>(M, 1)) * 4, s);
  encoder_input_dev(x, a.apply_b_dec ? b_dec : nullptr, N, D, xin.as<float>(), s);
  latent_prep_dev(W_dec, a.jumprelu ? F(dlt) : nullptr, M, D, norm.as<float>(), theta.as<float>(), s);
  ThresholdDev tw{D, M, W_enc, b_enc, a.jumprelu ? theta.as<float>() : nullptr, nullptr, b_enc};
  DeviceBuffer counts(size_t(N) * 4, s), row_ptr(size_t(N + 1) * 8, s);
  threshold_count_dev(xin.as<float>(), tw, N, counts.as<int>(), s);
  row_ptr_dev(counts.as<int>(), N, row_ptr.as<int64_t>(), s);
  int64_t nnz = 0;
  CUDA_CHECK(cudaMemcpyAsync(&nnz, row_ptr.as<int64_t>() + N, 8, cudaMemcpyDeviceToHost, s));
  ses.sync();
  const size_t nz = size_t(std::max<int64_t>(nnz, 1));
  DeviceBuffer vals(nz * 4, s), idx(nz * 4, s), row_of(nz * 4, s), gh(nz * 4, s), sp(nz * 8, s);
  threshold_write_dev(xin.as<float>(), tw, N, row_ptr.as<int64_t>(), 0, vals.as<float>(), idx.as<int>(), s);
  row_of_dev(row_ptr.as<int64_t>(), N, row_of.as<int>(), s);
  mark_fired_dev(vals.as<float>(), idx.as<int>(), nnz, fired.int_ptr(), s);

  DeviceBuffer gout(size_t(N * D) * 4, s), se(size_t(N) * 8, s);
  SPX_LAUNCH(unsigned(N), 128, 0, s, decode_residual_kernel)(row_ptr.as<int64_t>(), vals.as<float>(), idx.as<int>(), W_dec,
                                                             b_dec, x, N, D, gout.as<float>(), se.as<double>());
  CUDA_CHECK_LAUNCH();
  const StepMath sm = step_math(a, N);
  const bool lp = !a.jumprelu && a.lp_norm != 1.0;
  DeviceBuffer rn(lp ? size_t(N) * 8 : 0, s), lp_w(lp ? nz * 8 : 0, s);
  if (lp) {
    SPX_LAUNCH(ceil_div(N * 32, 256), 256, 0, s, row_lp_norm_kernel)(row_ptr.as<int64_t>(), vals.as<float>(), idx.as<int>(),
                                                                     norm.as<float>(), N, a.lp_norm, rn.as<double>());
    CUDA_CHECK_LAUNCH();
  }
  if (nnz > 0) {
    SPX_LAUNCH(ceil_div(nnz * 32, 256), 256, 0, s, entry_grad_kernel)(row_of.as<int>(), vals.as<float>(), idx.as<int>(), nnz,
                                                                      gout.as<float>(), W_dec, norm.as<float>(), D, sm,
                                                                      lp ? rn.as<double>() : nullptr, gh.as<float>(),
                                                                      sp.as<double>(), lp ? lp_w.as<double>() : nullptr);
    CUDA_CHECK_LAUNCH();
  }
  if (a.jumprelu && M > 0) {
    const int64_t nblocks = (N + TR - 1) / TR;
    DeviceBuffer part(size_t(nblocks * M) * 8, s);
    SPX_LAUNCH(unsigned(nblocks), 256, 0, s, threshold_grad_kernel)(xin.as<float>(), gout.as<float>(), W_enc, b_enc, W_dec,
                                                                    theta.as<float>(), norm.as<float>(), N, M, D, sm,
                                                                    part.as<double>());
    CUDA_CHECK_LAUNCH();
    SPX_LAUNCH(ceil_div(M, 128), 128, 0, s, threshold_grad_reduce_kernel)(part.as<double>(), nblocks, M, theta.as<float>(),
                                                                          a.loss_scale, glt.ptr());
    CUDA_CHECK_LAUNCH();
  }
  if (M > 0) {
    Csr c = build_csr(idx.as<int>(), nnz, M, s);
    SPX_LAUNCH(unsigned(M), 128, 0, s, latent_grad_kernel)(c.start.as<int64_t>(), c.slots.as<int>(), row_of.as<int>(),
                                                           gh.as<float>(), vals.as<float>(), xin.as<float>(), gout.as<float>(),
                                                           W_dec, norm.as<float>(), D, sm, lp ? lp_w.as<double>() : nullptr,
                                                           a.loss_scale, gwe.ptr(), gbe.ptr(), gwd.ptr());
    CUDA_CHECK_LAUNCH();
    ses.sync();  // c's buffers go at the end of this scope
  }
  if (D > 0) {
    SPX_LAUNCH(ceil_div(D, 128), 128, 0, s, bdec_grad_kernel)(row_ptr.as<int64_t>(), idx.as<int>(), gh.as<float>(),
                                                              gout.as<float>(), W_enc, N, D, a.apply_b_dec, a.loss_scale, gbd.ptr());
    CUDA_CHECK_LAUNCH();
  }
  double pre_act = 0;
  if (a.jumprelu && a.dead.defined() && a.pre_act_coefficient > 0) {
    const std::vector<int> dl = dead_list(a.dead, s);
    const int64_t nd = int64_t(dl.size());
    if (nd > 0) {
      DeviceBuffer ddl(size_t(nd) * 4, s), sx(size_t(nd * D) * 8, s), loss_of(size_t(nd) * 8, s), gin(size_t(nd * D) * 8, s);
      CUDA_CHECK(cudaMemcpyAsync(ddl.get(), dl.data(), size_t(nd) * 4, cudaMemcpyHostToDevice, s));
      CUDA_CHECK(cudaMemsetAsync(sx.get(), 0, size_t(nd * D) * 8, s));
      const double c = a.pre_act_coefficient / double(N);
      SPX_LAUNCH(unsigned(nd), 128, 0, s, pre_act_kernel)(xin.as<float>(), W_enc, b_enc, W_dec, theta.as<float>(), norm.as<float>(),
                                                          ddl.as<int>(), N, D, c, a.loss_scale, sx.as<double>(),
                                                          loss_of.as<double>(), gin.as<double>(), gwe.ptr(), gbe.ptr(), glt.ptr(),
                                                          gwd.ptr());
      CUDA_CHECK_LAUNCH();
      if (a.apply_b_dec && D > 0) {
        SPX_LAUNCH(ceil_div(D, 128), 128, 0, s, pre_act_bdec_kernel)(gin.as<double>(), nd, D, a.loss_scale, gbd.ptr());
        CUDA_CHECK_LAUNCH();
      }
      std::vector<double> hl(static_cast<size_t>(nd));
      CUDA_CHECK(cudaMemcpyAsync(hl.data(), loss_of.get(), size_t(nd) * 8, cudaMemcpyDeviceToHost, s));
      ses.sync();
      for (double v : hl) pre_act += v;
      pre_act *= c;
    }
  }
  for (GradTarget* g : {&gwe, &gbe, &gwd, &gbd, &glt, &fired}) g->write_back();
  std::vector<double> hse(static_cast<size_t>(N)), hsp(static_cast<size_t>(nnz));
  CUDA_CHECK(cudaMemcpyAsync(hse.data(), se.get(), size_t(N) * 8, cudaMemcpyDeviceToHost, s));
  if (nnz) CUDA_CHECK(cudaMemcpyAsync(hsp.data(), sp.get(), size_t(nnz) * 8, cudaMemcpyDeviceToHost, s));
  ses.sync();
  ThresholdStepLossesDev L;
  for (double v : hse) L.mse += v;
  L.mse /= double(N);
  for (double v : hsp) L.sparsity += v;
  L.pre_act = pre_act;
  L.loss = L.mse + L.sparsity + L.pre_act;
  return L;
}

}  // namespace cuda
}  // namespace sparsify
