// Float64 reference of the sparse coder: dense pre-activations, full sorts for the
// selections, dense decodes and a direct backward. Slow and obvious on purpose.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/errors.h"
#include "cpu/sae.h"

namespace sparsify {
namespace {

// Indices of the kk largest values of row (ties -> lower index), restricted to `allowed`.
std::vector<int32_t> top_indices(const double* row, int64_t M, int64_t kk, const uint8_t* allowed) {
  std::vector<int32_t> ids;
  for (int64_t m = 0; m < M; ++m)
    if (!allowed || allowed[m]) ids.push_back(int32_t(m));
  std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
  ids.resize(size_t(kk));
  return ids;
}

struct Enc {
  std::vector<double> xin, pre;  // [N,D], [N,M]
};

Enc encode_dense(const SaeWeights& w, const SaeSpec& s, int64_t N, const float* x) {
  const int64_t D = w.D, M = w.M;
  Enc e;
  e.xin.resize(size_t(N * D));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t d = 0; d < D; ++d) e.xin[size_t(n * D + d)] = double(x[n * D + d]) - (s.transcode ? 0.0 : double(w.b_dec[d]));
  e.pre.resize(size_t(N * M));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m) {
      double z = w.b_enc[m];
      for (int64_t d = 0; d < D; ++d) z += e.xin[size_t(n * D + d)] * double(w.W_enc[m * D + d]);
      e.pre[size_t(n * M + m)] = z > 0 ? z : 0.0;
    }
  return e;
}

std::vector<int32_t> select_main(const SaeSpec& s, const double* row, int64_t M) {
  const int64_t k = s.k;
  if (!s.groupmax) return top_indices(row, M, k, nullptr);
  std::vector<int32_t> ids(static_cast<size_t>(k));
  const int64_t G = M / k;
  for (int64_t g = 0; g < k; ++g) {
    int64_t best = g * G;
    for (int64_t m = g * G; m < (g + 1) * G; ++m)
      if (row[m] > row[best]) best = m;
    ids[size_t(g)] = int32_t(best);
  }
  return ids;
}

}  // namespace

SaeRefResult sae_reference(const SaeWeights& w, const SaeWeights* frozen, const SaeSpec& s, int64_t N, const float* x,
                           const float* y, const uint8_t* dead, double auxk_alpha, double total_variance,
                           bool want_grads) {
  const int64_t D = w.D, M = w.M, k = s.k;
  SPX_CHECK(k >= 1 && k <= M, Value, "k out of range");
  SPX_CHECK(!s.groupmax || M % k == 0, Value, "groupmax needs num_latents divisible by k");
  const SaeWeights& f = frozen ? *frozen : w;
  if (!y) y = x;
  SaeRefResult R;
  Enc e = encode_dense(w, s, N, x);
  Enc ef = frozen ? encode_dense(f, s, N, x) : e;
  R.pre = e.pre;

  auto wdec = [&](const SaeWeights& p, int64_t m, int64_t d) { return double(p.W_dec[m * D + d]); };
  auto decode = [&](const SaeWeights& p, const std::vector<int32_t>& ids, const std::vector<double>& a, int64_t kk,
                    bool bias, std::vector<double>& out) {
    out.assign(size_t(N * D), 0.0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t d = 0; d < D; ++d) {
        double acc = bias ? double(p.b_dec[d]) : 0.0;
        for (int64_t j = 0; j < kk; ++j) acc += a[size_t(n * kk + j)] * wdec(p, ids[size_t(n * kk + j)], d);
        out[size_t(n * D + d)] = acc;
      }
  };
  auto add_skip = [&](const SaeWeights& p, std::vector<double>& out) {
    if (!p.W_skip) return;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < D; ++i) {
        double acc = 0;
        for (int64_t j = 0; j < D; ++j) acc += double(x[n * D + j]) * double(p.W_skip[i * D + j]);
        out[size_t(n * D + i)] += acc;
      }
  };

  // Main selection (from the live encoder).
  R.idx.resize(size_t(N * k));
  R.acts.resize(size_t(N * k));
  for (int64_t n = 0; n < N; ++n) {
    auto ids = select_main(s, e.pre.data() + n * M, M);
    for (int64_t j = 0; j < k; ++j) {
      R.idx[size_t(n * k + j)] = ids[size_t(j)];
      R.acts[size_t(n * k + j)] = e.pre[size_t(n * M + ids[size_t(j)])];
    }
  }
  std::vector<double> out;
  decode(w, R.idx, R.acts, k, true, out);
  add_skip(w, out);

  // Target variance.
  double tv = total_variance;
  if (!(tv > 0)) {
    tv = 0;
    for (int64_t d = 0; d < D; ++d) {
      double mu = 0;
      for (int64_t n = 0; n < N; ++n) mu += y[n * D + d];
      mu /= double(N);
      for (int64_t n = 0; n < N; ++n) tv += (y[n * D + d] - mu) * (y[n * D + d] - mu);
    }
  }
  R.losses.total_variance = tv;
  double se = 0;
  for (int64_t i = 0; i < N * D; ++i) se += (double(y[i]) - out[size_t(i)]) * (double(y[i]) - out[size_t(i)]);
  R.losses.fvu = se / tv;

  // AuxK (fixed form): residual and latents from the frozen parameters (detached paths).
  int64_t num_dead = 0;
  if (dead)
    for (int64_t m = 0; m < M; ++m) num_dead += dead[m] ? 1 : 0;
  R.losses.num_dead = num_dead;
  const int64_t kaf = D / 2;
  const bool use_aux = num_dead > 0 && kaf > 0;
  std::vector<int32_t> aidx;
  std::vector<double> aacts, ehat, e_det;
  double aux_scale = 0;
  if (use_aux) {
    const int64_t ka = std::min(kaf, num_dead);
    aux_scale = std::min(double(num_dead) / double(kaf), 1.0);
    aidx.resize(size_t(N * ka));
    aacts.resize(size_t(N * ka));
    for (int64_t n = 0; n < N; ++n) {
      auto ids = top_indices(ef.pre.data() + n * M, M, ka, dead);
      for (int64_t j = 0; j < ka; ++j) {
        aidx[size_t(n * ka + j)] = ids[size_t(j)];
        aacts[size_t(n * ka + j)] = ef.pre[size_t(n * M + ids[size_t(j)])];
      }
    }
    decode(w, aidx, aacts, ka, false, ehat);
    std::vector<double> outf;
    if (frozen) {
      std::vector<int32_t> fidx(size_t(N * k));
      std::vector<double> facts(size_t(N * k));
      for (int64_t n = 0; n < N; ++n) {
        auto ids = select_main(s, ef.pre.data() + n * M, M);
        for (int64_t j = 0; j < k; ++j) {
          fidx[size_t(n * k + j)] = ids[size_t(j)];
          facts[size_t(n * k + j)] = ef.pre[size_t(n * M + ids[size_t(j)])];
        }
      }
      decode(f, fidx, facts, k, true, outf);
      add_skip(f, outf);
    } else {
      outf = out;
    }
    e_det.resize(size_t(N * D));
    double sa = 0;
    for (int64_t i = 0; i < N * D; ++i) {
      e_det[size_t(i)] = double(y[i]) - outf[size_t(i)];
      sa += (ehat[size_t(i)] - e_det[size_t(i)]) * (ehat[size_t(i)] - e_det[size_t(i)]);
    }
    R.losses.auxk = aux_scale * sa / tv;
  }

  // Multi-TopK: 4k latents from the frozen encoder, decoded with the live decoder.
  const int64_t k4 = s.multi_topk ? 4 * k : 0;
  std::vector<int32_t> idx4;
  std::vector<double> acts4, out4;
  if (k4) {
    SPX_CHECK(k4 <= M, Value, "multi_topk needs 4k <= num_latents");
    idx4.resize(size_t(N * k4));
    acts4.resize(size_t(N * k4));
    for (int64_t n = 0; n < N; ++n) {
      auto ids = top_indices(ef.pre.data() + n * M, M, k4, nullptr);
      for (int64_t j = 0; j < k4; ++j) {
        idx4[size_t(n * k4 + j)] = ids[size_t(j)];
        acts4[size_t(n * k4 + j)] = ef.pre[size_t(n * M + ids[size_t(j)])];
      }
    }
    decode(w, idx4, acts4, k4, true, out4);
    double sm = 0;
    for (int64_t i = 0; i < N * D; ++i) sm += (out4[size_t(i)] - y[i]) * (out4[size_t(i)] - y[i]);
    R.losses.multi_topk_fvu = sm / tv;
  }
  R.losses.loss = R.losses.fvu + auxk_alpha * R.losses.auxk + R.losses.multi_topk_fvu / 8.0;
  R.sae_out = k4 ? out4 : out;
  if (!want_grads) return R;

  // Backward.
  R.g_W_enc.assign(size_t(M * D), 0.0);
  R.g_b_enc.assign(size_t(M), 0.0);
  R.g_W_dec.assign(size_t(M * D), 0.0);
  R.g_b_dec.assign(size_t(D), 0.0);
  if (w.W_skip) R.g_W_skip.assign(size_t(D * D), 0.0);
  std::vector<double> G(size_t(N * D));
  for (int64_t i = 0; i < N * D; ++i) G[size_t(i)] = -2.0 * (double(y[i]) - out[size_t(i)]) / tv;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t d = 0; d < D; ++d) {
      const double gnd = G[size_t(n * D + d)];
      R.g_b_dec[size_t(d)] += gnd;
      if (w.W_skip)
        for (int64_t j = 0; j < D; ++j) R.g_W_skip[size_t(d * D + j)] += gnd * double(x[n * D + j]);
    }
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < k; ++j) {
      const int64_t m = R.idx[size_t(n * k + j)];
      double ga = 0;
      for (int64_t d = 0; d < D; ++d) {
        ga += G[size_t(n * D + d)] * wdec(w, m, d);
        R.g_W_dec[size_t(m * D + d)] += R.acts[size_t(n * k + j)] * G[size_t(n * D + d)];
      }
      // Encoder: linear through the selected value (no ReLU mask), as FusedEncoder.backward.
      R.g_b_enc[size_t(m)] += ga;
      for (int64_t d = 0; d < D; ++d) {
        R.g_W_enc[size_t(m * D + d)] += ga * e.xin[size_t(n * D + d)];
        if (!s.transcode) R.g_b_dec[size_t(d)] -= ga * double(w.W_enc[m * D + d]);
      }
    }
  if (use_aux) {
    const int64_t ka = int64_t(aidx.size()) / N;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t j = 0; j < ka; ++j) {
        const int64_t m = aidx[size_t(n * ka + j)];
        for (int64_t d = 0; d < D; ++d) {
          const double ga = 2.0 * auxk_alpha * aux_scale * (ehat[size_t(n * D + d)] - e_det[size_t(n * D + d)]) / tv;
          R.g_W_dec[size_t(m * D + d)] += aacts[size_t(n * ka + j)] * ga;
        }
      }
  }
  if (k4) {
    for (int64_t n = 0; n < N; ++n)
      for (int64_t d = 0; d < D; ++d) {
        const double gm = 2.0 * (out4[size_t(n * D + d)] - y[n * D + d]) / (8.0 * tv);
        R.g_b_dec[size_t(d)] += gm;
        for (int64_t j = 0; j < k4; ++j)
          R.g_W_dec[size_t(int64_t(idx4[size_t(n * k4 + j)]) * D + d)] += acts4[size_t(n * k4 + j)] * gm;
      }
  }
  return R;
}

}  // namespace sparsify
