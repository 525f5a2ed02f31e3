// Threshold-coder training step, see threshold_step.h. Passes:
//   1. encode (threshold_encode: the kept latents only, tile-wise GEMM), decode, residual;
//   2. jumprelu only: the threshold gradient reaches every (row, latent) with |h - t| < eps/2,
//      kept or not, so h and g_f = gOut W_dec^T are recomputed tile by tile (two GEMMs into a
//      cache-sized buffer; never N x M), with per-block partial sums added in block order;
//   3. the sparse backward of the kept latents: by-latent buckets (counting sort) for W_enc,
//      b_enc and W_dec, per row for b_dec. Fixed block sizes: results do not depend on threads;
//   4. jumprelu with dead latents: the pre-activation loss (add_pre_act).
// relu with lp_norm p != 1: each row's penalty is ||u||_p over its kept u_j = f_j n_j, so the
// pass-1 gradients of u_j carry w_j = (u_j / ||u||_p)^(p-1) (0 for a row whose norm is 0).
#include "cpu/threshold_step.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/parallel.h"
#include "cpu/gemm.h"
#include "cpu/threshold_encode.h"

namespace sparsify {
namespace {

// ||u||_p of row n's kept entries u_j = f_j n_j, scaled by the largest |u_j| so u^p cannot overflow.
double row_lp_norm(const ThresholdCsr& csr, int64_t n, const float* norm, double p) {
  double mx = 0;
  for (int64_t j = csr.row_ptr[size_t(n)]; j < csr.row_ptr[size_t(n + 1)]; ++j)
    mx = std::max(mx, std::fabs(double(csr.vals[size_t(j)]) * norm[csr.idx[size_t(j)]]));
  if (!(mx > 0)) return 0;
  double acc = 0;
  for (int64_t j = csr.row_ptr[size_t(n)]; j < csr.row_ptr[size_t(n + 1)]; ++j)
    acc += std::pow(std::fabs(double(csr.vals[size_t(j)]) * norm[csr.idx[size_t(j)]]) / mx, p);
  return mx * std::pow(acc, 1.0 / p);
}

}  // namespace

namespace {

// JumpReLU's pre-activation loss (SAELens jumprelu_sae.py calculate_pre_act_loss):
// c mean_n sum_{m dead} ReLU(t_m - h) n_m. Below the threshold d/dh = -c n_m / N, d/dt_m = c n_m / N
// and d/dn_m = c ReLU(t_m - h) / N, so per dead latent only the count of rows below t_m, the sum
// of their inputs x' and of t_m - h are needed: h is recomputed per tile of the gathered dead
// rows (each tile one task, rows in order: no reduction across threads).
double add_pre_act(const ThresholdStepWeights& w, const ThresholdStepSpec& s, int64_t N, const float* xin, const float* theta,
                   const float* norm, const ThresholdStepGrads& g) {
  const int64_t M = w.M, D = w.D;
  std::vector<int64_t> dl;
  for (int64_t m = 0; m < M; ++m)
    if (w.dead[m]) dl.push_back(m);
  const int64_t nd = int64_t(dl.size());
  if (nd == 0 || s.pre_act_coefficient == 0) return 0;
  std::vector<float> Wd(static_cast<size_t>(nd * D)), bd(static_cast<size_t>(nd));
  for (int64_t j = 0; j < nd; ++j) {
    std::copy(w.W_enc + dl[size_t(j)] * D, w.W_enc + (dl[size_t(j)] + 1) * D, Wd.begin() + j * D);
    bd[size_t(j)] = w.b_enc[dl[size_t(j)]];
  }
  const int64_t R = 64, T = 64, ntiles = (nd + T - 1) / T;
  const double c = s.pre_act_coefficient / double(N), ls = s.loss_scale;
  std::vector<double> loss_of(static_cast<size_t>(nd), 0.0), below(static_cast<size_t>(nd), 0.0);
  std::vector<double> gin(static_cast<size_t>(nd * D), 0.0);  // d loss / d x' rows: b_dec's share
  parallel_for(ntiles, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> H(static_cast<size_t>(R * T));
    std::vector<double> sx(static_cast<size_t>(T * D));
    for (int64_t tile = t0; tile < t1; ++tile) {
      const int64_t j0 = tile * T, tn = std::min(T, nd - j0);
      std::fill(sx.begin(), sx.end(), 0.0);
      for (int64_t r0 = 0; r0 < N; r0 += R) {
        const int64_t rn = std::min(R, N - r0);
        gemm(rn, tn, D, xin + r0 * D, D, GemmB{Wd.data() + j0 * D, DType::F32, D, true}, H.data(), T, false, bd.data() + j0);
        for (int64_t t = 0; t < tn; ++t) {
          const int64_t m = dl[size_t(j0 + t)];
          for (int64_t rr = 0; rr < rn; ++rr) {
            const double gap = double(theta[m]) - H[size_t(rr * T + t)];
            if (!(gap > 0)) continue;
            loss_of[size_t(j0 + t)] += gap;
            below[size_t(j0 + t)] += 1;
            const float* xr = xin + (r0 + rr) * D;
            for (int64_t d = 0; d < D; ++d) sx[size_t(t * D + d)] += xr[d];
          }
        }
      }
      for (int64_t t = 0; t < tn; ++t) {
        const int64_t m = dl[size_t(j0 + t)];
        const double gh = -c * norm[m];  // per row below the threshold
        g.b_enc[m] += float(ls * gh * below[size_t(j0 + t)]);
        for (int64_t d = 0; d < D; ++d) g.W_enc[m * D + d] += float(ls * gh * sx[size_t(t * D + d)]);
        g.log_threshold[m] += float(ls * c * norm[m] * below[size_t(j0 + t)] * theta[m]);
        if (norm[m] > 0)
          for (int64_t d = 0; d < D; ++d) g.W_dec[m * D + d] += float(ls * c * loss_of[size_t(j0 + t)] * w.W_dec[m * D + d] / norm[m]);
        for (int64_t d = 0; d < D; ++d) gin[size_t((j0 + t) * D + d)] = gh * below[size_t(j0 + t)] * w.W_enc[m * D + d];
      }
    }
  });
  if (s.apply_b_dec)
    for (int64_t d = 0; d < D; ++d) {
      double v = 0;
      for (int64_t j = 0; j < nd; ++j) v += gin[size_t(j * D + d)];
      g.b_dec[d] -= float(ls * v);
    }
  double loss = 0;
  for (int64_t j = 0; j < nd; ++j) loss += loss_of[size_t(j)] * norm[dl[size_t(j)]];
  return c * loss;
}

}  // namespace

ThresholdStepLosses threshold_step(const ThresholdStepWeights& w, const ThresholdStepSpec& s, int64_t N, const float* x,
                                   const ThresholdStepGrads& g) {
  const int64_t M = w.M, D = w.D;
  SPX_CHECK(N >= 1, Value, "threshold_step needs at least one row");
  SPX_CHECK(!s.jumprelu || s.bandwidth > 0, Value, "jumprelu bandwidth must be > 0, got " + std::to_string(s.bandwidth));
  SPX_CHECK(s.jumprelu || (std::isfinite(s.lp_norm) && s.lp_norm >= 1), Value,
            "relu lp_norm must be a finite number >= 1, got " + std::to_string(s.lp_norm));
  SPX_CHECK(std::isfinite(s.pre_act_coefficient) && s.pre_act_coefficient >= 0, Value,
            "pre_act_loss_coefficient must be a finite number >= 0, got " + std::to_string(s.pre_act_coefficient));
  std::vector<float> xin(static_cast<size_t>(N * D));
  for (int64_t i = 0; i < N * D; ++i) {
    if (!std::isfinite(x[i])) fail(ErrorKind::Value, "x contains NaN or Inf (first at flat index " + std::to_string(i) + ")");
    xin[size_t(i)] = s.apply_b_dec ? x[i] - w.b_dec[i % D] : x[i];
  }
  std::vector<float> theta(static_cast<size_t>(s.jumprelu ? M : 0)), norm(static_cast<size_t>(M));
  for (int64_t m = 0; m < M; ++m) {
    if (s.jumprelu) theta[size_t(m)] = std::exp(w.log_threshold[m]);
    double q = 0;
    for (int64_t d = 0; d < D; ++d) q += double(w.W_dec[m * D + d]) * w.W_dec[m * D + d];
    norm[size_t(m)] = float(std::sqrt(q));
  }
  ThresholdWeights tw;
  tw.D = D;
  tw.M = M;
  tw.W_enc = w.W_enc;
  tw.gate_bias = w.b_enc;
  tw.value_bias = w.b_enc;
  tw.gate_threshold = s.jumprelu ? theta.data() : nullptr;
  ThresholdCsr csr = threshold_encode(tw, N, xin.data());
  if (g.did_fire)
    for (size_t j = 0; j < csr.idx.size(); ++j)
      if (csr.vals[j] > 0) g.did_fire[csr.idx[j]] = 1;

  // Decode and residual; gOut = 2 (out - x) / N.
  std::vector<float> gout(static_cast<size_t>(N * D));
  std::vector<double> row_se(static_cast<size_t>(N));
  parallel_for(N, 16, [&](int64_t r0, int64_t r1) {
    std::vector<float> o(static_cast<size_t>(D));
    for (int64_t n = r0; n < r1; ++n) {
      std::copy(w.b_dec, w.b_dec + D, o.begin());
      for (int64_t j = csr.row_ptr[size_t(n)]; j < csr.row_ptr[size_t(n + 1)]; ++j) {
        const float a = csr.vals[size_t(j)];
        const float* wd = w.W_dec + int64_t(csr.idx[size_t(j)]) * D;
        for (int64_t d = 0; d < D; ++d) o[size_t(d)] += a * wd[d];
      }
      double se = 0;
      for (int64_t d = 0; d < D; ++d) {
        const float e = o[size_t(d)] - x[n * D + d];
        se += double(e) * e;
        gout[size_t(n * D + d)] = float(2.0 * e / double(N));
      }
      row_se[size_t(n)] = se;
    }
  });
  ThresholdStepLosses L;
  for (double v : row_se) L.mse += v;
  L.mse /= double(N);

  // Gradient at each kept latent (g_h) and the sparsity term.
  const double ls = s.loss_scale;
  const double c = (s.jumprelu ? s.l0_coefficient : s.l1_coefficient) / double(N);
  const int64_t nnz = csr.row_ptr[size_t(N)];
  std::vector<float> gh(static_cast<size_t>(nnz));
  std::vector<double> row_sparsity(static_cast<size_t>(N));
  const bool lp = !s.jumprelu && s.lp_norm != 1.0;
  std::vector<double> lp_w(static_cast<size_t>(lp ? nnz : 0));  // d||u||_p / du_j of each kept entry
  parallel_for(N, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t n = r0; n < r1; ++n) {
      double sp = 0;
      const double rn = lp ? row_lp_norm(csr, n, norm.data(), s.lp_norm) : 0.0;
      for (int64_t j = csr.row_ptr[size_t(n)]; j < csr.row_ptr[size_t(n + 1)]; ++j) {
        const int64_t m = csr.idx[size_t(j)];
        const float f = csr.vals[size_t(j)];
        const float* wd = w.W_dec + m * D;
        double gu = 0;
        for (int64_t d = 0; d < D; ++d) gu += double(gout[size_t(n * D + d)]) * wd[d];
        if (lp) {
          const double u = double(f) * norm[size_t(m)];
          const double q = rn > 0 && u > 0 ? std::pow(u / rn, s.lp_norm - 1) : 0.0;
          lp_w[size_t(j)] = q;
          gu += c * q * norm[size_t(m)];
        } else if (!s.jumprelu) {
          sp += c * f * norm[size_t(m)];
          gu += c * norm[size_t(m)];
        } else if (s.tanh_l0) {
          const double t = std::tanh(s.tanh_scale * f * norm[size_t(m)]);
          sp += c * t;
          gu += c * (1 - t * t) * s.tanh_scale * norm[size_t(m)];
        } else {
          sp += c;
        }
        gh[size_t(j)] = float(gu);
      }
      row_sparsity[size_t(n)] = lp ? c * rn : sp;
    }
  });
  for (double v : row_sparsity) L.sparsity += v;

  // Threshold gradient (jumprelu): tile pass over every (row, latent) near the threshold.
  if (s.jumprelu) {
    const double eps = s.bandwidth;
    const int64_t R = 64, T = std::min<int64_t>(M, 512);
    const int64_t nblocks = (N + R - 1) / R;
    std::vector<double> part(static_cast<size_t>(nblocks * M), 0.0);
    parallel_for(nblocks, 1, [&](int64_t b0, int64_t b1) {
      std::vector<float> H(static_cast<size_t>(R * T)), GU(static_cast<size_t>(R * T));
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t r0 = b * R, rn = std::min(R, N - r0);
        double* acc = part.data() + b * M;
        for (int64_t m0 = 0; m0 < M; m0 += T) {
          const int64_t tn = std::min(T, M - m0);
          gemm(rn, tn, D, xin.data() + r0 * D, D, GemmB{w.W_enc + m0 * D, DType::F32, D, true}, H.data(), T, false, w.b_enc + m0);
          gemm(rn, tn, D, gout.data() + r0 * D, D, GemmB{w.W_dec + m0 * D, DType::F32, D, true}, GU.data(), T, false, nullptr);
          for (int64_t rr = 0; rr < rn; ++rr)
            for (int64_t t = 0; t < tn; ++t) {
              const int64_t m = m0 + t;
              const double th = theta[size_t(m)], h = H[size_t(rr * T + t)];
              const double z = (h - th) / eps;
              if (!(z > -0.5 && z < 0.5)) continue;
              const bool kept = h > th;
              double gf = GU[size_t(rr * T + t)];
              if (s.tanh_l0) {
                const double tt = kept ? std::tanh(s.tanh_scale * h * norm[size_t(m)]) : 0.0;
                gf += c * (1 - tt * tt) * s.tanh_scale * norm[size_t(m)];
              } else {
                acc[m] += -(1.0 / eps) * c;
              }
              acc[m] += -(th / eps) * gf;
            }
        }
      }
    });
    for (int64_t m = 0; m < M; ++m) {
      double t = 0;
      for (int64_t b = 0; b < nblocks; ++b) t += part[size_t(b * M + m)];
      g.log_threshold[m] += float(ls * t * theta[size_t(m)]);
    }
  }

  // Sparse backward by latent: entries of each latent in row order (counting sort).
  std::vector<int64_t> start(static_cast<size_t>(M + 1), 0);
  for (int64_t j = 0; j < nnz; ++j) ++start[size_t(csr.idx[size_t(j)]) + 1];
  for (int64_t m = 0; m < M; ++m) start[size_t(m + 1)] += start[size_t(m)];
  std::vector<int64_t> fill(start.begin(), start.end() - 1), entry(static_cast<size_t>(nnz)), row_of(static_cast<size_t>(nnz));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = csr.row_ptr[size_t(n)]; j < csr.row_ptr[size_t(n + 1)]; ++j) {
      const int64_t p = fill[size_t(csr.idx[size_t(j)])]++;
      entry[size_t(p)] = j;
      row_of[size_t(p)] = n;
    }
  parallel_for(M, 8, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      float* ge = g.W_enc + m * D;
      float* gd = g.W_dec + m * D;
      double gb = 0, gnorm = 0;
      std::vector<double> ae(static_cast<size_t>(D), 0.0), ad(static_cast<size_t>(D), 0.0);
      for (int64_t p = start[size_t(m)]; p < start[size_t(m + 1)]; ++p) {
        const int64_t j = entry[size_t(p)], n = row_of[size_t(p)];
        const double gv = gh[size_t(j)], f = csr.vals[size_t(j)];
        gb += gv;
        for (int64_t d = 0; d < D; ++d) {
          ae[size_t(d)] += gv * xin[size_t(n * D + d)];
          ad[size_t(d)] += f * gout[size_t(n * D + d)];
        }
        if (lp) gnorm += c * lp_w[size_t(j)] * f;
        else if (!s.jumprelu) gnorm += c * f;
        else if (s.tanh_l0) {
          const double t = std::tanh(s.tanh_scale * f * norm[size_t(m)]);
          gnorm += c * (1 - t * t) * s.tanh_scale * f;
        }
      }
      g.b_enc[m] += float(ls * gb);
      const double nm = norm[size_t(m)];
      for (int64_t d = 0; d < D; ++d) {
        ge[d] += float(ls * ae[size_t(d)]);
        gd[d] += float(ls * (ad[size_t(d)] + (nm > 0 ? gnorm * w.W_dec[m * D + d] / nm : 0.0)));
      }
    }
  });
  // b_dec: the decoder bias term minus the encoder-input path, summed over rows.
  std::vector<double> gbd(static_cast<size_t>(D), 0.0);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t d = 0; d < D; ++d) gbd[size_t(d)] += gout[size_t(n * D + d)];
    for (int64_t j = csr.row_ptr[size_t(n)]; s.apply_b_dec && j < csr.row_ptr[size_t(n + 1)]; ++j) {
      const float* we = w.W_enc + int64_t(csr.idx[size_t(j)]) * D;
      for (int64_t d = 0; d < D; ++d) gbd[size_t(d)] -= double(gh[size_t(j)]) * we[d];
    }
  }
  for (int64_t d = 0; d < D; ++d) g.b_dec[d] += float(ls * gbd[size_t(d)]);
  if (s.jumprelu && w.dead) L.pre_act = add_pre_act(w, s, N, xin.data(), theta.data(), norm.data(), g);
  L.loss = L.mse + L.sparsity + L.pre_act;
  return L;
}

}  // namespace sparsify
