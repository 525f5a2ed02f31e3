// Losses (FVU, fixed AuxK, Multi-TopK) and the sparse backward of sparsify's SparseCoder: one
// training step after the encoder (CUDA twin: native/cuda/sae_backward.cu, driven by the resident
// state of native/cuda/sae_state.cu; float64 reference: native/ref/sae_reference.cpp).
// Everything after the encoder costs O(N*k*D): decoder-row gathers, and the
// scatter-adds of W_dec / W_enc / b_enc grads done per latent from a by-latent bucket list
// (counting sort, stable in token order) so that sums are deterministic and race-free.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/parallel.h"
#include "cpu/gemm.h"
#include "cpu/isa.h"
#include "cpu/sae.h"

namespace sparsify {
namespace {

inline void axpy(int64_t D, float a, const float* x, float* y) {
  for (int64_t d = 0; d < D; ++d) y[d] += a * x[d];
}
inline float dot(int64_t D, const float* a, const float* b) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t d = 0;
  for (; d + 4 <= D; d += 4) {
    s0 += a[d] * b[d];
    s1 += a[d + 1] * b[d + 1];
    s2 += a[d + 2] * b[d + 2];
    s3 += a[d + 3] * b[d + 3];
  }
  for (; d < D; ++d) s0 += a[d] * b[d];
  return (s0 + s1) + (s2 + s3);
}

// Tokens grouped by latent: for latent m, entries [start[m], start[m+1]) of `tok` hold the flat
// (n*k + j) positions that selected m, in increasing order.
struct ByLatent {
  std::vector<int64_t> start;
  std::vector<int32_t> pos;
  void build(int64_t N, int64_t k, const int32_t* idx, int64_t M) {
    start.assign(size_t(M + 1), 0);
    for (int64_t i = 0; i < N * k; ++i) ++start[size_t(idx[i]) + 1];
    for (int64_t m = 0; m < M; ++m) start[size_t(m + 1)] += start[size_t(m)];
    std::vector<int64_t> cur(start.begin(), start.end() - 1);
    pos.resize(size_t(N * k));
    for (int64_t i = 0; i < N * k; ++i) pos[size_t(cur[size_t(idx[i])]++)] = int32_t(i);
  }
};

// Column sums of a [N,D] matrix in double, with a fixed block split so the result does not
// depend on the thread count.
void column_sums(int64_t N, int64_t D, const float* a, double* out) {
  const int64_t B = 64;
  const int64_t nb = (N + B - 1) / B;
  std::vector<double> part(size_t(nb * D), 0.0);
  parallel_for(nb, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      double* p = part.data() + b * D;
      for (int64_t n = b * B; n < std::min(N, (b + 1) * B); ++n)
        for (int64_t d = 0; d < D; ++d) p[d] += a[n * D + d];
    }
  });
  std::fill(out, out + D, 0.0);
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t d = 0; d < D; ++d) out[d] += part[size_t(b * D + d)];
}

// The per-latent backward pass (see sae_forward_backward); compiled for AVX-512, AVX2+FMA and
// the baseline ISA, and picked at run time.
struct LatentPass {
  int64_t D = 0, k = 0, k4 = 0, ka = 0;
  ByLatent bl, bl4, bla;
  const float *acts = nullptr, *acts4 = nullptr, *aacts = nullptr;
  const float *G = nullptr, *Gm = nullptr, *Ga = nullptr, *xin = nullptr, *W_dec = nullptr, *W_enc = nullptr;
  float *gW_dec = nullptr, *gW_enc = nullptr, *gb_enc = nullptr;

  // Latents [m0, m1); bdec_part (may be null) += sum_m gb_m W_enc[m].
  inline __attribute__((always_inline)) void body(int64_t m0, int64_t m1, float* bdec_part) const {
    for (int64_t m = m0; m < m1; ++m) {
      const float* wd = W_dec + m * D;
      const float* we = W_enc + m * D;
      float* __restrict gwd = gW_dec + m * D;
      float* __restrict gwe = gW_enc + m * D;
      float gb = 0.f;
      for (int64_t p = bl.start[size_t(m)]; p < bl.start[size_t(m + 1)]; ++p) {
        const int64_t i = bl.pos[size_t(p)], n = i / k;
        const float* __restrict gn = G + n * D;
        const float* __restrict xn = xin + n * D;
        float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f, s4 = 0.f, s5 = 0.f, s6 = 0.f, s7 = 0.f;
        int64_t d = 0;
        for (; d + 8 <= D; d += 8) {
          s0 += gn[d] * wd[d];
          s1 += gn[d + 1] * wd[d + 1];
          s2 += gn[d + 2] * wd[d + 2];
          s3 += gn[d + 3] * wd[d + 3];
          s4 += gn[d + 4] * wd[d + 4];
          s5 += gn[d + 5] * wd[d + 5];
          s6 += gn[d + 6] * wd[d + 6];
          s7 += gn[d + 7] * wd[d + 7];
        }
        for (; d < D; ++d) s0 += gn[d] * wd[d];
        const float ga = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
        const float a = acts[size_t(i)];
        for (int64_t e = 0; e < D; ++e) {
          gwd[e] += a * gn[e];
          gwe[e] += ga * xn[e];
        }
        gb += ga;
      }
      gb_enc[m] += gb;
      if (bdec_part && gb != 0.f)
        for (int64_t e = 0; e < D; ++e) bdec_part[e] += gb * we[e];
      if (k4)
        for (int64_t p = bl4.start[size_t(m)]; p < bl4.start[size_t(m + 1)]; ++p) {
          const int64_t i = bl4.pos[size_t(p)], n = i / k4;
          const float a = acts4[size_t(i)];
          const float* gn = Gm + n * D;
          for (int64_t e = 0; e < D; ++e) gwd[e] += a * gn[e];
        }
      if (ka)
        for (int64_t p = bla.start[size_t(m)]; p < bla.start[size_t(m + 1)]; ++p) {
          const int64_t i = bla.pos[size_t(p)], n = i / ka;
          const float a = aacts[size_t(i)];
          const float* gn = Ga + n * D;
          for (int64_t e = 0; e < D; ++e) gwd[e] += a * gn[e];
        }
    }
  }
#if defined(__x86_64__)
  __attribute__((target("avx2,fma"))) void body_avx2(int64_t m0, int64_t m1, float* part) const { body(m0, m1, part); }
  __attribute__((target("avx512f,avx2,fma"))) void body_avx512(int64_t m0, int64_t m1, float* part) const {
    body(m0, m1, part);
  }
#endif
  void body_generic(int64_t m0, int64_t m1, float* part) const { body(m0, m1, part); }
  // isa: the GEMM's (cpu/isa.h), so SPARSIFY_GEMM pins this pass too.
  void run(Isa isa, int64_t m0, int64_t m1, float* part) const {
#if defined(__x86_64__)
    if (isa == Isa::Avx512) return body_avx512(m0, m1, part);
    if (isa == Isa::Avx2) return body_avx2(m0, m1, part);
#endif
    (void)isa;
    body_generic(m0, m1, part);
  }
};

// AuxK through dense GEMMs over the dead latents only, used when the selection is dense among
// them (num_dead <= 10 k_aux; then the [rows, num_dead] blocks stay small): the k_aux-sparse rows
// become a dense [rows, num_dead] block, e_hat = A W_dec[dead] and, in the backward,
// grad W_dec[dead] += A^T G_aux. Row blocks are visited in a fixed order (deterministic).
struct DenseAux {
  int64_t N = 0, D = 0, ka = 0, nd = 0;
  std::vector<int32_t> dead_list, slot_of;  // dead latent ids; latent -> dead slot (or -1)
  std::vector<float> Wd;                    // W_dec rows of the dead latents [nd, D]
  static constexpr int64_t RB = 256;

  // A GEMM multiply-add costs ~10x less than a gathered one; the copies of the dead rows and
  // their gradient are capped at 8M floats each.
  static bool worth_it(int64_t num_dead, int64_t ka, int64_t D) {
    return ka > 0 && num_dead <= 10 * ka && num_dead * D <= (int64_t(8) << 20);
  }

  void init(int64_t M, int64_t D_, int64_t N_, int64_t ka_, const uint8_t* dead, const float* W_dec) {
    N = N_;
    D = D_;
    ka = ka_;
    slot_of.assign(size_t(M), -1);
    for (int64_t m = 0; m < M; ++m)
      if (dead[m]) {
        slot_of[size_t(m)] = int32_t(dead_list.size());
        dead_list.push_back(int32_t(m));
      }
    nd = int64_t(dead_list.size());
    Wd.resize(size_t(nd * D));
    parallel_for(nd, 64, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        std::copy(W_dec + int64_t(dead_list[size_t(i)]) * D, W_dec + int64_t(dead_list[size_t(i)] + 1) * D,
                  Wd.data() + i * D);
    });
  }

  // A block [rb, nd] (or its transpose [nd, rb]) of rows [r0, r0 + rb).
  void block(const float* acts, const int32_t* idx, int64_t r0, int64_t rb, bool transposed, float* A) const {
    std::fill(A, A + rb * nd, 0.f);
    for (int64_t r = 0; r < rb; ++r)
      for (int64_t j = 0; j < ka; ++j) {
        const int64_t i = (r0 + r) * ka + j;
        const int64_t sl = slot_of[size_t(idx[i])];
        if (transposed)
          A[sl * rb + r] = acts[i];
        else
          A[r * nd + sl] = acts[i];
      }
  }

  void decode(const float* acts, const int32_t* idx, float* ehat) const {
    std::vector<float> A(static_cast<size_t>(RB * nd));
    for (int64_t r0 = 0; r0 < N; r0 += RB) {
      const int64_t rb = std::min(RB, N - r0);
      block(acts, idx, r0, rb, false, A.data());
      gemm(rb, D, nd, A.data(), nd, GemmB{Wd.data(), DType::F32, D, false}, ehat + r0 * D, D);
    }
  }

  void backward(const float* acts, const int32_t* idx, const float* Ga, float* gW_dec) const {
    std::vector<float> At(static_cast<size_t>(RB * nd)), gWd(static_cast<size_t>(nd * D), 0.f);
    for (int64_t r0 = 0; r0 < N; r0 += RB) {
      const int64_t rb = std::min(RB, N - r0);
      block(acts, idx, r0, rb, true, At.data());
      gemm(nd, D, rb, At.data(), rb, GemmB{Ga + r0 * D, DType::F32, D, false}, gWd.data(), D, true);
    }
    parallel_for(nd, 64, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        float* dst = gW_dec + int64_t(dead_list[size_t(i)]) * D;
        const float* src = gWd.data() + i * D;
        for (int64_t d = 0; d < D; ++d) dst[d] += src[d];
      }
    });
  }
};

// SPARSIFY_SAE_PROFILE=1 prints per-phase process CPU time of each step to stderr.
struct PhaseClock {
  bool on = std::getenv("SPARSIFY_SAE_PROFILE") != nullptr;
  double last = now();
  std::string line;
  static double now() {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) * 1e-6;
  }
  void mark(const char* what) {
    if (!on) return;
    const double t = now();
    line += std::string(what) + "=" + std::to_string(int(t - last)) + "ms ";
    last = t;
  }
  ~PhaseClock() {
    if (on) std::fprintf(stderr, "[sae] %s\n", line.c_str());
  }
};

}  // namespace

void sae_normalize_decoder(int64_t M, int64_t D, float* W) {
  const float eps = std::numeric_limits<float>::epsilon();
  parallel_for(M, 64, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      float* r = W + m * D;
      double ss = 0;
      for (int64_t d = 0; d < D; ++d) ss += double(r[d]) * r[d];
      const float den = float(std::sqrt(ss)) + eps;
      for (int64_t d = 0; d < D; ++d) r[d] /= den;
    }
  });
}

void sae_project_decoder_grad(int64_t M, int64_t D, const float* W, float* g) {
  parallel_for(M, 64, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const float* w = W + m * D;
      float* gr = g + m * D;
      const float c = dot(D, gr, w);
      for (int64_t d = 0; d < D; ++d) gr[d] -= c * w[d];
    }
  });
}

SaeLosses sae_forward_backward(const SaeWeights& w, const SaeSpec& s, const SaeStepArgs& a, const SaeGrads* g) {
  const int64_t N = a.N, D = w.D, M = w.M, k = s.k;
  SPX_CHECK(w.W_dec, Value, "this coder has no decoder (loaded with decoder=false)");
  SPX_CHECK(N >= 1, Shape, "x must have at least one row");
  const float* x = a.x;
  const float* y = a.y ? a.y : a.x;
  SaeLosses L;
  PhaseClock clock;

  // Encoder input.
  std::vector<float> xin_buf;
  const float* xin = sae_encoder_input(w, s, N, x, xin_buf);

  // AuxK setup (k_aux = d_out // 2, scale = min(num_dead / k_aux, 1), k_aux = min(k_aux, num_dead)).
  int64_t num_dead = 0;
  if (a.dead)
    for (int64_t m = 0; m < M; ++m) num_dead += a.dead[m] ? 1 : 0;
  L.num_dead = num_dead;
  const int64_t k_aux_full = D / 2;
  const bool use_aux = num_dead > 0 && k_aux_full > 0;
  const int64_t ka = use_aux ? std::min(k_aux_full, num_dead) : 0;
  const double aux_scale = use_aux ? std::min(double(num_dead) / double(k_aux_full), 1.0) : 0.0;
  const int64_t k4 = s.multi_topk ? 4 * k : 0;

  std::vector<float> acts(size_t(N * k)), acts4(size_t(N * k4)), aacts(size_t(N * ka));
  std::vector<int32_t> idx(acts.size()), idx4(acts4.size()), aidx(aacts.size());
  EncodeOut eo;
  eo.acts = acts.data();
  eo.idx = idx.data();
  eo.k4 = k4;
  eo.acts4 = acts4.data();
  eo.idx4 = idx4.data();
  eo.dead = use_aux ? a.dead : nullptr;
  eo.k_aux = ka;
  eo.aux_acts = aacts.data();
  eo.aux_idx = aidx.data();
  clock.mark("xin");
  sae_encode(w, s, N, xin, eo);
  clock.mark("encode");

  // Total variance of the target over this batch (or the caller's, PR #138).
  std::vector<double> ymean(static_cast<size_t>(D));
  column_sums(N, D, y, ymean.data());
  for (auto& v : ymean) v /= double(N);
  double tv = a.total_variance;
  if (!(tv > 0)) {
    std::vector<double> rows(static_cast<size_t>(N));
    parallel_for(N, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t n = r0; n < r1; ++n) {
        double acc = 0;
        for (int64_t d = 0; d < D; ++d) {
          const double t = double(y[n * D + d]) - ymean[size_t(d)];
          acc += t * t;
        }
        rows[size_t(n)] = acc;
      }
    });
    tv = 0;
    for (double r : rows) tv += r;
  }
  L.total_variance = tv;

  // Reconstructions and residuals, per row.
  std::vector<float> out(size_t(N * D));
  sae_decode(N, k, D, M, acts.data(), idx.data(), w.W_dec, w.b_dec, out.data());
  if (w.W_skip) {
    GemmB b{w.W_skip, DType::F32, D, true};
    gemm(N, D, D, x, D, b, out.data(), D, true, nullptr);
  }
  std::vector<float> out4, ehat;
  const bool dense_aux = !a.force_sparse_aux && DenseAux::worth_it(num_dead, ka, D);
  DenseAux daux;
  if (k4) {
    out4.resize(size_t(N * D));
    sae_decode(N, k4, D, M, acts4.data(), idx4.data(), w.W_dec, w.b_dec, out4.data());
  }
  if (ka) {
    ehat.resize(size_t(N * D));
    // e_hat has no + b_dec (PR #134).
    if (dense_aux) {
      daux.init(M, D, N, ka, a.dead, w.W_dec);
      daux.decode(aacts.data(), aidx.data(), ehat.data());
    } else {
      sae_decode(N, ka, D, M, aacts.data(), aidx.data(), w.W_dec, nullptr, ehat.data());
    }
  }
  clock.mark("decode");
  std::vector<double> row_e2(static_cast<size_t>(N)), row_a2(static_cast<size_t>(N)), row_m2(static_cast<size_t>(N));
  parallel_for(N, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t n = r0; n < r1; ++n) {
      double e2 = 0, a2 = 0, m2 = 0;
      for (int64_t d = 0; d < D; ++d) {
        const int64_t i = n * D + d;
        const float e = y[i] - out[size_t(i)];
        e2 += double(e) * e;
        if (ka) {
          const float r = ehat[size_t(i)] - e;
          a2 += double(r) * r;
        }
        if (k4) {
          const float r = out4[size_t(i)] - y[i];
          m2 += double(r) * r;
        }
      }
      row_e2[size_t(n)] = e2;
      row_a2[size_t(n)] = a2;
      row_m2[size_t(n)] = m2;
    }
  });
  double se = 0, sa = 0, sm = 0;
  for (int64_t n = 0; n < N; ++n) {
    se += row_e2[size_t(n)];
    sa += row_a2[size_t(n)];
    sm += row_m2[size_t(n)];
  }
  L.fvu = se / tv;
  L.auxk = ka ? aux_scale * sa / tv : 0.0;
  L.multi_topk_fvu = k4 ? sm / tv : 0.0;
  L.loss = L.fvu + a.auxk_alpha * L.auxk + L.multi_topk_fvu / 8.0;

  // Forward outputs.
  const int64_t kr = k4 ? k4 : k;
  const float* ret_acts = k4 ? acts4.data() : acts.data();
  const int32_t* ret_idx = k4 ? idx4.data() : idx.data();
  if (a.sae_out) std::copy(k4 ? out4.begin() : out.begin(), k4 ? out4.end() : out.end(), a.sae_out);
  if (a.latent_acts) std::copy(ret_acts, ret_acts + N * kr, a.latent_acts);
  if (a.latent_idx) std::copy(ret_idx, ret_idx + N * kr, a.latent_idx);
  if (a.did_fire)
    for (int64_t i = 0; i < N * kr; ++i) a.did_fire[ret_idx[i]] = 1;
  clock.mark("losses");
  if (!g) return L;

  // ---- backward ----
  // Upstream gradients w.r.t. the three reconstructions (in place over the buffers).
  const double sc = a.loss_scale;
  const float cf = float(-2.0 * sc / tv);                           // d/d out  of  sum(y-out)^2/tv
  const float ca = float(2.0 * sc * a.auxk_alpha * aux_scale / tv); // d/d ehat of alpha*scale*sum(ehat-e)^2/tv
  const float cm = float(2.0 * sc / (8.0 * tv));                    // d/d out4 of sum(out4-y)^2/(8 tv)
  parallel_for(N, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t n = r0; n < r1; ++n)
      for (int64_t d = 0; d < D; ++d) {
        const int64_t i = n * D + d;
        const float e = y[i] - out[size_t(i)];
        if (ka) ehat[size_t(i)] = ca * (ehat[size_t(i)] - e);
        if (k4) out4[size_t(i)] = cm * (out4[size_t(i)] - y[i]);
        out[size_t(i)] = cf * e;
      }
  });
  const float* G = out.data();
  const float* Ga = ehat.data();
  const float* Gm = out4.data();

  // b_dec through decode's + b_dec (main and 4k reconstructions).
  std::vector<double> gbdec(static_cast<size_t>(D), 0.0);
  {
    std::vector<double> cs(static_cast<size_t>(D));
    column_sums(N, D, G, gbdec.data());
    if (k4) {
      column_sums(N, D, Gm, cs.data());
      for (int64_t d = 0; d < D; ++d) gbdec[size_t(d)] += cs[size_t(d)];
    }
  }

  // W_skip: G^T x.
  if (w.W_skip && g->W_skip) {
    std::vector<float> Gt(static_cast<size_t>(D * N));
    parallel_for(D, 8, [&](int64_t d0, int64_t d1) {
      for (int64_t d = d0; d < d1; ++d)
        for (int64_t n = 0; n < N; ++n) Gt[size_t(d * N + n)] = G[n * D + d];
    });
    GemmB b{x, DType::F32, D, false};
    gemm(D, D, N, Gt.data(), N, b, g->W_skip, D, true, nullptr);
  }
  clock.mark("grad_bdec_skip");

  // One pass over the latents: for each token that selected latent m, the activation's
  // gradient <G[n], W_dec[m]> feeds W_enc[m] and b_enc[m] (no ReLU mask), and act * G[n] feeds
  // W_dec[m]; AuxK / Multi-TopK terms feed W_dec[m] only. The encoder-input path to b_dec,
  // -sum_n sum_j gact W_enc[idx], is regrouped by latent as -sum_m gb_m W_enc[m], summed per
  // fixed chunk of latents (deterministic).
  LatentPass lp;
  lp.D = D;
  lp.k = k;
  lp.k4 = k4;
  lp.ka = dense_aux ? 0 : ka;
  lp.bl.build(N, k, idx.data(), M);
  if (k4) lp.bl4.build(N, k4, idx4.data(), M);
  if (ka && !dense_aux) lp.bla.build(N, ka, aidx.data(), M);
  if (dense_aux) daux.backward(aacts.data(), aidx.data(), Ga, g->W_dec);
  clock.mark("buckets");
  lp.acts = acts.data();
  lp.acts4 = acts4.data();
  lp.aacts = aacts.data();
  lp.G = G;
  lp.Gm = Gm;
  lp.Ga = Ga;
  lp.xin = xin;
  lp.W_dec = w.W_dec;
  lp.W_enc = w.W_enc;
  lp.gW_dec = g->W_dec;
  lp.gW_enc = g->W_enc;
  lp.gb_enc = g->b_enc;
  const int64_t CH = 256;
  const int64_t nch = (M + CH - 1) / CH;
  std::vector<float> part(s.transcode ? 0 : static_cast<size_t>(nch * D), 0.f);
  const Isa isa = active_isa();
  parallel_for(nch, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      lp.run(isa, c * CH, std::min(M, (c + 1) * CH), s.transcode ? nullptr : part.data() + c * D);
  });
  if (!s.transcode)
    for (int64_t c = 0; c < nch; ++c)
      for (int64_t d = 0; d < D; ++d) gbdec[size_t(d)] -= part[size_t(c * D + d)];
  for (int64_t d = 0; d < D; ++d) g->b_dec[d] += float(gbdec[size_t(d)]);
  clock.mark("scatter");
  return L;
}

}  // namespace sparsify
