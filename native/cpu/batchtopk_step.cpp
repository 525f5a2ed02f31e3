// BatchTopK / Matryoshka training step, see batchtopk_step.h. The batch-wide selection runs
// tile by tile (shared GEMM into a cache-sized buffer, never N x M): each thread's range of row
// blocks keeps its own min-heap of the best floor(k N) candidates, and the ranges' heaps are
// merged; the order (value desc, flat index asc) is total, so the kept set does not depend on
// the thread count. On the kept set u = a / n equals h, so the decoder norms get no gradient
// through the selection (the two paths cancel) and d loss / d h = <g_out, W_dec[m]>.
#include "cpu/batchtopk_step.h"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <string>

#include "core/errors.h"
#include "core/parallel.h"
#include "cpu/gemm.h"

namespace sparsify {
namespace {

struct Cand {
  float v;
  int64_t i;  // flat index n * M + m
};
// "a is better than b": larger value, then lower index.
inline bool better(const Cand& a, const Cand& b) { return a.v > b.v || (a.v == b.v && a.i < b.i); }
// Min-heap comparator for std::push_heap: the root is the worst kept candidate.
inline bool heap_cmp(const Cand& a, const Cand& b) { return better(a, b); }

// Adds the W_enc, b_enc and W_dec gradients (times ls) of `count` selected entries, latent by
// latent: entry j sits in row row_of(j) at latent latent_of(j) with activation value_of(j) (h·n
// units), sees upstream gh[j] and its row's output gradient gout_at(n, m, d). Entries are bucketed
// by latent in entry order (a counting sort), so sums do not depend on the thread count. Shared by
// the main path and AuxK.
template <class RowOf, class LatentOf, class ValueOf, class GoutAt>
void add_latent_grads(int64_t count, int64_t M, int64_t D, const float* xin, const float* norm, const float* gh,
                      RowOf row_of, LatentOf latent_of, ValueOf value_of, GoutAt gout_at, double ls,
                      const ThresholdStepGrads& g) {
  std::vector<int64_t> start(static_cast<size_t>(M + 1), 0);
  for (int64_t j = 0; j < count; ++j) ++start[size_t(latent_of(j)) + 1];
  for (int64_t m = 0; m < M; ++m) start[size_t(m + 1)] += start[size_t(m)];
  std::vector<int64_t> fill(start.begin(), start.end() - 1), entry(static_cast<size_t>(count));
  for (int64_t j = 0; j < count; ++j) entry[size_t(fill[size_t(latent_of(j))]++)] = j;
  parallel_for(M, 8, [&](int64_t m0, int64_t m1) {
    std::vector<double> ae(static_cast<size_t>(D)), ad(static_cast<size_t>(D));
    for (int64_t m = m0; m < m1; ++m) {
      if (start[size_t(m)] == start[size_t(m + 1)]) continue;
      std::fill(ae.begin(), ae.end(), 0.0);
      std::fill(ad.begin(), ad.end(), 0.0);
      double gb = 0;
      for (int64_t p = start[size_t(m)]; p < start[size_t(m + 1)]; ++p) {
        const int64_t j = entry[size_t(p)], n = row_of(j);
        const double gv = gh[size_t(j)], u = double(value_of(j)) / norm[m];
        gb += gv;
        for (int64_t d = 0; d < D; ++d) {
          ae[size_t(d)] += gv * xin[n * D + d];
          ad[size_t(d)] += u * gout_at(n, m, d);
        }
      }
      g.b_enc[m] += float(ls * gb);
      for (int64_t d = 0; d < D; ++d) {
        g.W_enc[m * D + d] += float(ls * ae[size_t(d)]);
        g.W_dec[m * D + d] += float(ls * ad[size_t(d)]);
      }
    }
  });
}

// AuxK (see batchtopk_step.h): adds its loss's gradients (times loss_scale) and returns the loss.
// h of the dead latents is recomputed tile by tile (their encoder rows gathered); each row keeps
// its top k_aux in a bounded heap. Its gradients follow the main path's: on the selected set
// u = a / n = h, so d aux / d h = <g_recon, W_dec[m]> and the decoder norms get none.
double add_auxk(const ThresholdStepWeights& w, const BatchTopKSpec& s, int64_t N, const float* xin, const float* norm,
                const float* resid, const ThresholdStepGrads& g) {
  const int64_t M = w.M, D = w.D;
  std::vector<int64_t> dl;
  for (int64_t m = 0; m < M; ++m)
    if (w.dead[m]) dl.push_back(m);
  const int64_t nd = int64_t(dl.size()), half = D / 2;
  if (nd == 0 || s.aux_coefficient == 0) return 0;
  SPX_CHECK(half >= 1, Value, "AuxK needs d_in >= 2 (k_aux = d_in / 2), got d_in=" + std::to_string(D));
  const double scale = std::min(double(nd) / double(half), 1.0);
  const int64_t ka = std::min(half, nd);
  std::vector<float> Wd(static_cast<size_t>(nd * D)), bd(static_cast<size_t>(nd));
  for (int64_t j = 0; j < nd; ++j) {
    std::copy(w.W_enc + dl[size_t(j)] * D, w.W_enc + (dl[size_t(j)] + 1) * D, Wd.begin() + j * D);
    bd[size_t(j)] = w.b_enc[dl[size_t(j)]];
  }
  // sel[n * ka + j]: row n's j-th selected (a = h n, latent), in heap order.
  std::vector<Cand> sel(static_cast<size_t>(N * ka));
  const int64_t R = 64, T = std::min<int64_t>(nd, 512), nblocks = (N + R - 1) / R;
  parallel_for(nblocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> H(static_cast<size_t>(R * T));
    std::vector<std::vector<Cand>> heaps(static_cast<size_t>(R));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * R, rn = std::min(R, N - r0);
      for (auto& hp : heaps) hp.clear();
      for (int64_t j0 = 0; j0 < nd; j0 += T) {
        const int64_t tn = std::min(T, nd - j0);
        gemm(rn, tn, D, xin + r0 * D, D, GemmB{Wd.data() + j0 * D, DType::F32, D, true}, H.data(), T, false, bd.data() + j0);
        for (int64_t rr = 0; rr < rn; ++rr)
          for (int64_t t = 0; t < tn; ++t) {
            const int64_t m = dl[size_t(j0 + t)];
            const Cand c{H[size_t(rr * T + t)] * norm[m], m};
            std::vector<Cand>& hp = heaps[size_t(rr)];
            if (int64_t(hp.size()) < ka) {
              hp.push_back(c);
              std::push_heap(hp.begin(), hp.end(), heap_cmp);
            } else if (better(c, hp.front())) {
              std::pop_heap(hp.begin(), hp.end(), heap_cmp);
              hp.back() = c;
              std::push_heap(hp.begin(), hp.end(), heap_cmp);
            }
          }
      }
      for (int64_t rr = 0; rr < rn; ++rr) std::copy(heaps[size_t(rr)].begin(), heaps[size_t(rr)].end(), sel.begin() + (r0 + rr) * ka);
    }
  });
  // recon - r per row, its gradient gr = 2 c scale (recon - r) / N and g_h per selected entry.
  const double cs = s.aux_coefficient * scale;
  std::vector<float> gr(static_cast<size_t>(N * D)), gh(static_cast<size_t>(N * ka));
  std::vector<double> se(static_cast<size_t>(N));
  parallel_for(N, 16, [&](int64_t r0, int64_t r1) {
    std::vector<float> o(static_cast<size_t>(D));
    for (int64_t n = r0; n < r1; ++n) {
      std::copy(w.b_dec, w.b_dec + D, o.begin());
      for (int64_t j = 0; j < ka; ++j) {
        const Cand& c = sel[size_t(n * ka + j)];
        const float u = c.v / norm[c.i];
        for (int64_t d = 0; d < D; ++d) o[size_t(d)] += u * w.W_dec[c.i * D + d];
      }
      double q = 0;
      for (int64_t d = 0; d < D; ++d) {
        const float e = o[size_t(d)] - resid[n * D + d];
        q += double(e) * e;
        gr[size_t(n * D + d)] = float(2.0 * cs * e / double(N));
      }
      se[size_t(n)] = q;
      for (int64_t j = 0; j < ka; ++j) {
        const int64_t m = sel[size_t(n * ka + j)].i;
        double v = 0;
        for (int64_t d = 0; d < D; ++d) v += double(gr[size_t(n * D + d)]) * w.W_dec[m * D + d];
        gh[size_t(n * ka + j)] = float(v);
      }
    }
  });
  double aux = 0;
  for (double q : se) aux += q;
  aux *= cs / double(N);
  // By latent, then b_dec per column.
  const double ls = s.loss_scale;
  add_latent_grads(
      N * ka, M, D, xin, norm, gh.data(), [&](int64_t j) { return j / ka; }, [&](int64_t j) { return sel[size_t(j)].i; },
      [&](int64_t j) { return sel[size_t(j)].v; }, [&](int64_t n, int64_t, int64_t d) { return double(gr[size_t(n * D + d)]); },
      ls, g);
  std::vector<double> gbd(static_cast<size_t>(D), 0.0);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t d = 0; d < D; ++d) gbd[size_t(d)] += gr[size_t(n * D + d)];
    for (int64_t j = 0; s.apply_b_dec && j < ka; ++j) {
      const float* we = w.W_enc + sel[size_t(n * ka + j)].i * D;
      for (int64_t d = 0; d < D; ++d) gbd[size_t(d)] -= double(gh[size_t(n * ka + j)]) * we[d];
    }
  }
  for (int64_t d = 0; d < D; ++d) g.b_dec[d] += float(ls * gbd[size_t(d)]);
  return aux;
}

}  // namespace

BatchTopKLosses batchtopk_step(const ThresholdStepWeights& w, const BatchTopKSpec& s, int64_t N, const float* x,
                               const ThresholdStepGrads& g) {
  const int64_t M = w.M, D = w.D;
  SPX_CHECK(N >= 1, Value, "batchtopk_step needs at least one row");
  SPX_CHECK(s.k > 0, Value, "batchtopk k must be > 0, got " + std::to_string(s.k));
  SPX_CHECK(std::isfinite(s.aux_coefficient) && s.aux_coefficient >= 0, Value,
            "aux_loss_coefficient must be a finite number >= 0, got " + std::to_string(s.aux_coefficient));
  for (int64_t wd : s.widths)
    SPX_CHECK(wd >= 1 && wd < M, Value, "matryoshka widths must be in [1, num_latents), got " + std::to_string(wd));
  for (size_t i = 1; i < s.widths.size(); ++i)
    SPX_CHECK(s.widths[i] > s.widths[i - 1], Value, "matryoshka widths must be strictly increasing");
  if (s.per_row)
    SPX_CHECK(s.k == std::floor(s.k) && s.k >= 1 && s.k <= double(M), Value,
              "topk k must be an integer in [1, num_latents], got " + std::to_string(s.k));
  const int64_t kk = s.per_row ? int64_t(s.k) : std::min<int64_t>(int64_t(std::floor(s.k * double(N))), N * M);
  SPX_CHECK(kk >= 1, Value, "batchtopk keeps floor(k * rows) = 0 latents; k=" + std::to_string(s.k) + " rows=" + std::to_string(N));
  std::vector<float> xin(static_cast<size_t>(N * D)), norm(static_cast<size_t>(M));
  for (int64_t i = 0; i < N * D; ++i) {
    if (!std::isfinite(x[i])) fail(ErrorKind::Value, "x contains NaN or Inf (first at flat index " + std::to_string(i) + ")");
    xin[size_t(i)] = s.apply_b_dec ? x[i] - w.b_dec[i % D] : x[i];
  }
  for (int64_t m = 0; m < M; ++m) {
    double q = 0;
    for (int64_t d = 0; d < D; ++d) q += double(w.W_dec[m * D + d]) * w.W_dec[m * D + d];
    norm[size_t(m)] = float(std::sqrt(q));
  }

  // Selection.
  const int64_t R = 64, T = std::min<int64_t>(M, 512), nblocks = (N + R - 1) / R;
  std::vector<Cand> merged;
  std::mutex mu;
  // A bounded min-heap of the best candidates: offer() keeps the `cap` best seen.
  auto offer = [](std::vector<Cand>& heap, int64_t cap, const Cand& c) {
    if (int64_t(heap.size()) < cap) {
      heap.push_back(c);
      std::push_heap(heap.begin(), heap.end(), heap_cmp);
    } else if (better(c, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), heap_cmp);
      heap.back() = c;
      std::push_heap(heap.begin(), heap.end(), heap_cmp);
    }
  };
  if (s.per_row)
    parallel_for(nblocks, 1, [&](int64_t b0, int64_t b1) {
      std::vector<std::vector<Cand>> heaps(static_cast<size_t>(R));
      std::vector<Cand> local;
      std::vector<float> H(static_cast<size_t>(R * T));
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t r0 = b * R, rn = std::min(R, N - r0);
        for (auto& hp : heaps) hp.clear();
        for (int64_t m0 = 0; m0 < M; m0 += T) {
          const int64_t tn = std::min(T, M - m0);
          gemm(rn, tn, D, xin.data() + r0 * D, D, GemmB{w.W_enc + m0 * D, DType::F32, D, true}, H.data(), T, false, w.b_enc + m0);
          for (int64_t rr = 0; rr < rn; ++rr)
            for (int64_t t = 0; t < tn; ++t) {
              const float a = H[size_t(rr * T + t)] * norm[size_t(m0 + t)];
              if (a > 0.f) offer(heaps[size_t(rr)], kk, Cand{a, (r0 + rr) * M + m0 + t});
            }
        }
        for (int64_t rr = 0; rr < rn; ++rr) local.insert(local.end(), heaps[size_t(rr)].begin(), heaps[size_t(rr)].end());
      }
      std::lock_guard<std::mutex> lock(mu);
      merged.insert(merged.end(), local.begin(), local.end());
    });
  else
  parallel_for(nblocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<Cand> heap;
    heap.reserve(size_t(std::min<int64_t>(kk, (b1 - b0) * R * M)));
    std::vector<float> H(static_cast<size_t>(R * T));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * R, rn = std::min(R, N - r0);
      for (int64_t m0 = 0; m0 < M; m0 += T) {
        const int64_t tn = std::min(T, M - m0);
        gemm(rn, tn, D, xin.data() + r0 * D, D, GemmB{w.W_enc + m0 * D, DType::F32, D, true}, H.data(), T, false, w.b_enc + m0);
        for (int64_t rr = 0; rr < rn; ++rr)
          for (int64_t t = 0; t < tn; ++t) {
            const float a = H[size_t(rr * T + t)] * norm[size_t(m0 + t)];
            if (!(a > 0.f)) continue;
            const Cand c{a, (r0 + rr) * M + m0 + t};
            if (int64_t(heap.size()) < kk) {
              heap.push_back(c);
              std::push_heap(heap.begin(), heap.end(), heap_cmp);
            } else if (better(c, heap.front())) {
              std::pop_heap(heap.begin(), heap.end(), heap_cmp);
              heap.back() = c;
              std::push_heap(heap.begin(), heap.end(), heap_cmp);
            }
          }
      }
    }
    std::lock_guard<std::mutex> lock(mu);
    merged.insert(merged.end(), heap.begin(), heap.end());
  });
  if (!s.per_row && int64_t(merged.size()) > kk) {
    std::nth_element(merged.begin(), merged.begin() + kk, merged.end(), better);
    merged.resize(size_t(kk));
  }
  std::sort(merged.begin(), merged.end(), [](const Cand& a, const Cand& b) { return a.i < b.i; });  // row, then latent order
  const int64_t nnz = int64_t(merged.size());
  std::vector<int64_t> row_ptr(static_cast<size_t>(N + 1), 0);
  for (const Cand& c : merged) ++row_ptr[size_t(c.i / M) + 1];
  for (int64_t n = 0; n < N; ++n) row_ptr[size_t(n + 1)] += row_ptr[size_t(n)];
  BatchTopKLosses L;
  L.kept = nnz;
  L.min_kept = nnz ? merged[0].v : 0;
  for (const Cand& c : merged) L.min_kept = std::min(L.min_kept, double(c.v));
  if (g.did_fire)
    for (const Cand& c : merged)
      if (c.v > 0) g.did_fire[c.i % M] = 1;

  // Decodes (full width, then each prefix) and their output gradients 2 (out - x) / N.
  const int64_t nw = int64_t(s.widths.size());
  std::vector<float> gout(static_cast<size_t>((nw + 1) * N * D));
  std::vector<double> se(static_cast<size_t>((nw + 1) * N), 0.0);
  std::vector<float> resid(static_cast<size_t>(w.dead ? N * D : 0));  // x - out, AuxK's target
  parallel_for(N, 16, [&](int64_t r0, int64_t r1) {
    std::vector<float> o(static_cast<size_t>(D));
    for (int64_t n = r0; n < r1; ++n)
      for (int64_t lv = 0; lv <= nw; ++lv) {
        const int64_t width = lv < nw ? s.widths[size_t(lv)] : M;
        std::copy(w.b_dec, w.b_dec + D, o.begin());
        for (int64_t j = row_ptr[size_t(n)]; j < row_ptr[size_t(n + 1)]; ++j) {
          const int64_t m = merged[size_t(j)].i % M;
          if (m >= width) continue;
          const float u = merged[size_t(j)].v / norm[size_t(m)];
          for (int64_t d = 0; d < D; ++d) o[size_t(d)] += u * w.W_dec[m * D + d];
        }
        double q = 0;
        float* go = gout.data() + (lv * N + n) * D;
        for (int64_t d = 0; d < D; ++d) {
          const float e = o[size_t(d)] - x[n * D + d];
          q += double(e) * e;
          go[d] = float(2.0 * e / double(N));
          if (lv == nw && w.dead) resid[size_t(n * D + d)] = -e;
        }
        se[size_t(lv * N + n)] = q;
      }
  });
  for (int64_t n = 0; n < N; ++n) {
    L.mse += se[size_t(nw * N + n)] / double(N);
    for (int64_t lv = 0; lv < nw; ++lv) L.inner += se[size_t(lv * N + n)] / double(N);
  }
  L.loss = L.mse + L.inner;

  // Per kept entry: the output gradient it sees (full width + every prefix containing it).
  auto gsum = [&](int64_t n, int64_t m, int64_t d) {
    double v = gout[size_t((nw * N + n) * D + d)];
    for (int64_t lv = 0; lv < nw; ++lv)
      if (m < s.widths[size_t(lv)]) v += gout[size_t((lv * N + n) * D + d)];
    return v;
  };
  std::vector<float> gh(static_cast<size_t>(nnz));
  parallel_for(nnz, 64, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t n = merged[size_t(j)].i / M, m = merged[size_t(j)].i % M;
      double v = 0;
      for (int64_t d = 0; d < D; ++d) v += gsum(n, m, d) * w.W_dec[m * D + d];
      gh[size_t(j)] = float(v);
    }
  });
  // By latent: entries of each latent in row order.
  const double ls = s.loss_scale;
  add_latent_grads(
      nnz, M, D, xin.data(), norm.data(), gh.data(), [&](int64_t j) { return merged[size_t(j)].i / M; },
      [&](int64_t j) { return merged[size_t(j)].i % M; }, [&](int64_t j) { return merged[size_t(j)].v; }, gsum, ls, g);
  std::vector<double> gbd(static_cast<size_t>(D), 0.0);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t lv = 0; lv <= nw; ++lv)
      for (int64_t d = 0; d < D; ++d) gbd[size_t(d)] += gout[size_t((lv * N + n) * D + d)];
    for (int64_t j = row_ptr[size_t(n)]; s.apply_b_dec && j < row_ptr[size_t(n + 1)]; ++j) {
      const float* we = w.W_enc + (merged[size_t(j)].i % M) * D;
      for (int64_t d = 0; d < D; ++d) gbd[size_t(d)] -= double(gh[size_t(j)]) * we[d];
    }
  }
  for (int64_t d = 0; d < D; ++d) g.b_dec[d] += float(ls * gbd[size_t(d)]);
  if (w.dead) {
    L.aux = add_auxk(w, s, N, xin.data(), norm.data(), resid.data(), g);
    L.loss += L.aux;
  }
  return L;
}

}  // namespace sparsify
