// Fused TopK / GroupMax encoder: pre-activations are computed one latent tile at a time with
// the shared GEMM into a [rows, tile] buffer, and each row keeps its running selections (top-k,
// top-4k for Multi-TopK, top-k_aux over dead latents for AuxK). The N x M matrix exists only
// when the caller asks for pre-activations.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/errors.h"
#include "core/parallel.h"
#include "cpu/gemm.h"
#include "cpu/gemm_bf16.h"
#include "core/coder_spec.h"
#include "cpu/isa.h"
#include "cpu/sae.h"

namespace sparsify {
namespace {

// Min-heap of (value, index) whose root is the worst kept entry: the smallest value, and among
// equal values the largest index. Candidates arrive in increasing index order, so a candidate
// enters only when strictly greater than the root (ties keep the lower index).
struct TopHeap {
  float* v;
  int32_t* i;
  int64_t n;
  static bool worse(float va, int32_t ia, float vb, int32_t ib) { return va < vb || (va == vb && ia > ib); }
  void init() {
    for (int64_t j = 0; j < n; ++j) {
      v[j] = -1.f;  // below any ReLU output, so the first n latents always enter
      i[j] = -1;
    }
  }
  float threshold() const { return v[0]; }
  void replace_root(float val, int32_t idx) {
    int64_t p = 0;
    for (;;) {
      int64_t l = 2 * p + 1, r = l + 1, m = p;
      float mv = val;
      int32_t mi = idx;
      if (l < n && worse(v[l], i[l], mv, mi)) { m = l; mv = v[l]; mi = i[l]; }
      if (r < n && worse(v[r], i[r], mv, mi)) { m = r; }
      if (m == p) break;
      v[p] = v[m];
      i[p] = i[m];
      p = m;
    }
    v[p] = val;
    i[p] = idx;
  }
  // Sorted by value desc, index asc.
  void sort_desc() {
    std::vector<std::pair<float, int32_t>> tmp(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) tmp[size_t(j)] = {v[j], i[j]};
    std::sort(tmp.begin(), tmp.end(), [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    for (int64_t j = 0; j < n; ++j) {
      v[j] = tmp[size_t(j)].first;
      i[j] = tmp[size_t(j)].second;
    }
  }
};

inline float relu(float z) { return z > 0.f ? z : 0.f; }  // NaN -> 0

// True when some of c[0..16) is greater than th (16 values, SIMD compare).
inline bool any_greater16(const float* c, float th) {
#if defined(__SSE2__)
  const __m128 t = _mm_set1_ps(th);
  const __m128 a = _mm_or_ps(_mm_cmpgt_ps(_mm_loadu_ps(c), t), _mm_cmpgt_ps(_mm_loadu_ps(c + 4), t));
  const __m128 b = _mm_or_ps(_mm_cmpgt_ps(_mm_loadu_ps(c + 8), t), _mm_cmpgt_ps(_mm_loadu_ps(c + 12), t));
  return _mm_movemask_ps(_mm_or_ps(a, b)) != 0;
#else
  bool any = false;
  for (int i = 0; i < 16; ++i) any |= c[i] > th;
  return any;
#endif
}

// Offers relu(c[t]) (latent m0 + t, t < tn) to the heap.
// Chunks of 16 whose values are all <= the heap threshold are skipped with one compare.
void scan_topk(TopHeap h, const float* c, int64_t tn, int64_t m0) {
  float th = h.threshold();
  int64_t t = 0;
  for (; t < tn; t += 16) {
    const int64_t e = std::min(tn, t + 16);
    if (e - t == 16 && th >= 0.f && !any_greater16(c + t, th)) continue;
    for (int64_t u = t; u < e; ++u) {
      const float v = relu(c[u]);
      if (v > th) {
        h.replace_root(v, int32_t(m0 + u));
        th = h.threshold();
      }
    }
  }
}

#if defined(__x86_64__)
// scan_topk with one AVX-512 compare per 16 values: the lanes above the threshold come out of a
// mask and are visited in index order, so the heap sees the same candidates in the same order
// (the threshold only rises, so a lane at or below it at the compare can never enter later).
__attribute__((target("avx512f"))) void scan_topk_avx512(TopHeap h, const float* c, int64_t tn, int64_t m0) {
  float th = h.threshold();
  int64_t t = 0;
  for (; t + 16 <= tn; t += 16) {
    if (th < 0.f) {  // heap not full yet: every relu value enters, as in scan_topk
      for (int64_t u = t; u < t + 16; ++u) {
        const float v = relu(c[u]);
        if (v > th) {
          h.replace_root(v, int32_t(m0 + u));
          th = h.threshold();
        }
      }
      continue;
    }
    // Ordered compare: NaN lanes stay clear (relu(NaN) = 0 <= th).
    unsigned mask = _mm512_cmp_ps_mask(_mm512_loadu_ps(c + t), _mm512_set1_ps(th), _CMP_GT_OQ);
    while (mask) {
      const int64_t u = t + __builtin_ctz(mask);
      mask &= mask - 1;
      const float v = c[u];  // > the threshold at the compare >= 0, so relu(v) = v
      if (v > th) {
        h.replace_root(v, int32_t(m0 + u));
        th = h.threshold();
      }
    }
  }
  for (; t < tn; ++t) {
    const float v = relu(c[t]);
    if (v > th) {
      h.replace_root(v, int32_t(m0 + t));
      th = h.threshold();
    }
  }
}
#endif

using ScanFn = void (*)(TopHeap, const float*, int64_t, int64_t);

ScanFn scan_for(Isa isa) {
#if defined(__x86_64__)
  if (isa == Isa::Avx512) return scan_topk_avx512;
#endif
  (void)isa;
  return scan_topk;
}

// The AuxK selection (top k_aux of relu(z) over the dead latents, value desc then index asc): with
// k_aux in the hundreds a heap costs a sift per entering latent, so candidates above a lagging
// threshold go into a buffer of 2 k_aux; a full buffer is cut back to its best k_aux
// (nth_element), which raises the threshold to the worst one kept. Latents arrive in increasing
// index order, so a later one with the threshold's value loses the tie: `v > th` admits exactly
// the candidates the best k_aux could still take.
struct AuxBuffer {
  std::pair<float, int32_t>* e;  // [2 ka]
  int64_t* count;
  float* th;
  int64_t ka;
  static bool better(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  }
  void init() {
    *count = 0;
    *th = -1.f;  // below any ReLU output: everything enters until the first cut
  }
  void cut() {
    std::nth_element(e, e + (ka - 1), e + *count, better);
    *count = ka;
    *th = e[ka - 1].first;
  }
  void offer(float v, int32_t idx) {
    e[(*count)++] = {v, idx};
    if (*count == 2 * ka) cut();
  }
  // The best ka (unordered), padded with (-1, -1) when fewer latents were dead.
  void emit(float* v, int32_t* idx) {
    if (*count > ka) cut();
    for (int64_t j = 0; j < ka; ++j) {
      v[j] = j < *count ? e[j].first : -1.f;
      idx[j] = j < *count ? e[j].second : -1;
    }
  }
};

// Offers the dead latents of a tile (positions dp[0..nd) into c, latent m0 + dp[q]).
void scan_dead(AuxBuffer b, const float* c, const int32_t* dp, int64_t nd, int64_t m0) {
  for (int64_t q = 0; q < nd; ++q) {
    const float v = relu(c[dp[q]]);
    if (v > *b.th) b.offer(v, int32_t(m0 + dp[q]));
  }
}

#if defined(__x86_64__)
// scan_dead with the dead values gathered 16 at a time and one compare against the threshold;
// the lanes above it are offered in order (re-checked, since a cut can raise the threshold).
__attribute__((target("avx512f"))) void scan_dead_avx512(AuxBuffer b, const float* c, const int32_t* dp, int64_t nd,
                                                         int64_t m0) {
  int64_t q = 0;
  for (; q + 16 <= nd; q += 16) {
    if (*b.th < 0.f) {  // before the first cut every relu value enters
      scan_dead(b, c, dp + q, 16, m0);
      continue;
    }
    const __m512 vals = _mm512_i32gather_ps(_mm512_loadu_si512(dp + q), c, 4);
    unsigned mask = _mm512_cmp_ps_mask(vals, _mm512_set1_ps(*b.th), _CMP_GT_OQ);  // NaN lanes stay clear
    while (mask) {
      const int64_t u = q + __builtin_ctz(mask);
      mask &= mask - 1;
      const float v = c[dp[u]];  // > a threshold >= 0, so relu(v) = v
      if (v > *b.th) b.offer(v, int32_t(m0 + dp[u]));
    }
  }
  if (q < nd) scan_dead(b, c, dp + q, nd - q, m0);
}
#endif

using DeadScanFn = void (*)(AuxBuffer, const float*, const int32_t*, int64_t, int64_t);

DeadScanFn dead_scan_for(Isa isa) {
#if defined(__x86_64__)
  if (isa == Isa::Avx512) return scan_dead_avx512;
#endif
  (void)isa;
  return scan_dead;
}

}  // namespace

const float* sae_encoder_input(const SaeWeights& w, const SaeSpec& s, int64_t N, const float* x, std::vector<float>& buf) {
  if (s.transcode) return x;
  const int64_t D = w.D;
  buf.resize(size_t(N * D));
  parallel_for(N, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t n = r0; n < r1; ++n)
      for (int64_t d = 0; d < D; ++d) buf[size_t(n * D + d)] = x[n * D + d] - w.b_dec[d];
  });
  return buf.data();
}

void sae_encode(const SaeWeights& w, const SaeSpec& s, int64_t N, const float* xin, const EncodeOut& out) {
  const int64_t M = w.M, D = w.D, k = s.k;
  if (N == 0) return;
  check_coder_spec(M, k, s.groupmax, out.k4 > 0);
  const int64_t G = s.groupmax ? M / k : 0;
  const bool heap_main = !s.groupmax && out.k4 == 0;  // with k4 the main top-k is the head of the 4k selection
  const int64_t k4 = out.k4;
  const int64_t ka = out.dead ? out.k_aux : 0;

  const ScanFn scan = scan_for(active_isa());
  const DeadScanFn scan_dead_fn = dead_scan_for(active_isa());

  // Per-row selection state.
  std::vector<float> hv(size_t(N * (heap_main ? k : 0)));
  std::vector<int32_t> hi(hv.size());
  std::vector<float> h4v(size_t(N * k4));
  std::vector<int32_t> h4i(h4v.size());
  std::vector<float> gv(size_t(s.groupmax ? N * k : 0));
  std::vector<int32_t> gi(gv.size());
  parallel_for(N, 256, [&](int64_t r0, int64_t r1) {
    for (int64_t n = r0; n < r1; ++n) {
      if (heap_main) TopHeap{hv.data() + n * k, hi.data() + n * k, k}.init();
      if (k4) TopHeap{h4v.data() + n * k4, h4i.data() + n * k4, k4}.init();
      if (s.groupmax)
        for (int64_t g = 0; g < k; ++g) {
          gv[size_t(n * k + g)] = -1.f;
          gi[size_t(n * k + g)] = -1;
        }
    }
  });

  // Row blocks run in parallel; inside a block, latent tiles go through the GEMM (inline on
  // this thread) into a [R, T] buffer that stays in cache, and each row updates its selections.
  // Tiles of ~256K weights (512..1024 latents) keep GEMM calls large enough to be efficient.
  const int64_t T = std::min<int64_t>(M, std::max<int64_t>(512, std::min<int64_t>(1024, (262144 / std::max<int64_t>(D, 1)) / 64 * 64)));
  // Dead latents of each tile, so the AuxK scan touches only those.
  std::vector<int32_t> dead_pos;
  std::vector<int64_t> dead_start(static_cast<size_t>((M + T - 1) / T + 1), 0);
  if (ka) {
    for (int64_t m0 = 0, ti = 0; m0 < M; m0 += T, ++ti) {
      for (int64_t t = 0; t < std::min(T, M - m0); ++t)
        if (out.dead[m0 + t]) dead_pos.push_back(int32_t(t));
      dead_start[size_t(ti + 1)] = int64_t(dead_pos.size());
    }
  }
  // bf16 compute mode: W_enc rounded and packed once, the encoder input rounded once (T is a
  // multiple of 16, as the prepacked product's column offset must be).
  GemmBf16PackedB w_bf16;
  std::vector<uint16_t> x_bf16;
  if (s.bf16) {
    w_bf16 = gemm_bf16_pack_b(M, D, GemmB{w.W_enc, DType::F32, D, true});
    x_bf16.resize(size_t(N * D));
    round_to_bf16(N * D, xin, x_bf16.data());
  }
  const int64_t R = std::max<int64_t>(16, std::min<int64_t>(512, (N + 2 * num_threads() - 1) / (2 * num_threads())));
  const int64_t nblocks = (N + R - 1) / R;
  parallel_for(nblocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> C(static_cast<size_t>(R * T));
    // The AuxK buffers of this block's rows (a block runs all its tiles before the next block).
    std::vector<std::pair<float, int32_t>> aux_e(size_t(ka ? R * 2 * ka : 0));
    std::vector<int64_t> aux_count(size_t(ka ? R : 0));
    std::vector<float> aux_th(aux_count.size());
    auto aux = [&](int64_t rr) { return AuxBuffer{aux_e.data() + rr * 2 * ka, &aux_count[size_t(rr)], &aux_th[size_t(rr)], ka}; };
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * R, rn = std::min(R, N - r0);
      if (ka)
        for (int64_t rr = 0; rr < rn; ++rr) aux(rr).init();
      for (int64_t m0 = 0; m0 < M; m0 += T) {
        const int64_t tn = std::min(T, M - m0);
        if (s.bf16) {
          gemm_bf16_prepacked(rn, m0, m0 + tn, x_bf16.data() + r0 * D, D, w_bf16, C.data(), T, w.b_enc + m0);
        } else {
          GemmB gb{w.W_enc + m0 * D, DType::F32, D, true};
          gemm(rn, tn, D, xin + r0 * D, D, gb, C.data(), T, false, w.b_enc + m0);
        }
        const int32_t* dp = dead_pos.data() + (ka ? dead_start[size_t(m0 / T)] : 0);
        const int64_t nd = ka ? dead_start[size_t(m0 / T + 1)] - dead_start[size_t(m0 / T)] : 0;
        for (int64_t rr = 0; rr < rn; ++rr) {
          const int64_t n = r0 + rr;
          const float* c = C.data() + rr * T;  // pre-ReLU values z; relu(z) > th <=> z > th for th >= 0
          if (out.pre) {
            float* p = out.pre + n * M + m0;
            for (int64_t t = 0; t < tn; ++t) p[t] = relu(c[t]);
          }
          if (heap_main) scan(TopHeap{hv.data() + n * k, hi.data() + n * k, k}, c, tn, m0);
          if (k4) scan(TopHeap{h4v.data() + n * k4, h4i.data() + n * k4, k4}, c, tn, m0);
          if (nd) scan_dead_fn(aux(rr), c, dp, nd, m0);
          if (s.groupmax) {
            float* bv = gv.data() + n * k;
            int32_t* bi = gi.data() + n * k;
            for (int64_t t = 0; t < tn; ++t) {
              const int64_t m = m0 + t, g = m / G;
              const float v = relu(c[t]);
              if (v > bv[g]) {
                bv[g] = v;
                bi[g] = int32_t(m);
              }
            }
          }
        }
      }
      if (ka)  // AuxK slots come out unordered (their order does not matter)
        for (int64_t rr = 0; rr < rn; ++rr) aux(rr).emit(out.aux_acts + (r0 + rr) * ka, out.aux_idx + (r0 + rr) * ka);
    }
  });

  // Emit: sorted top-k (or groups in order), the 4k selection.
  parallel_for(N, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t n = r0; n < r1; ++n) {
      if (k4) {
        TopHeap h{h4v.data() + n * k4, h4i.data() + n * k4, k4};
        h.sort_desc();
        std::copy(h.v, h.v + k4, out.acts4 + n * k4);
        std::copy(h.i, h.i + k4, out.idx4 + n * k4);
        if (!s.groupmax) {
          std::copy(h.v, h.v + k, out.acts + n * k);
          std::copy(h.i, h.i + k, out.idx + n * k);
        }
      }
      if (heap_main) {
        TopHeap h{hv.data() + n * k, hi.data() + n * k, k};
        h.sort_desc();
        std::copy(h.v, h.v + k, out.acts + n * k);
        std::copy(h.i, h.i + k, out.idx + n * k);
      }
      if (s.groupmax) {
        std::copy(gv.data() + n * k, gv.data() + (n + 1) * k, out.acts + n * k);
        std::copy(gi.data() + n * k, gi.data() + (n + 1) * k, out.idx + n * k);
      }
    }
  });
}

void check_finite(const float* p, int64_t n, const char* what) {
  bool bad = false;
  for (int64_t i = 0; i < n; ++i) bad |= !std::isfinite(p[i]);
  if (bad) {
    int64_t at = 0;
    while (std::isfinite(p[at])) ++at;
    fail(ErrorKind::Value, std::string(what) + " contains NaN or Inf (first at flat index " + std::to_string(at) + ")");
  }
}

}  // namespace sparsify
