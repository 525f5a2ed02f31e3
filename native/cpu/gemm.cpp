// GEMM driver: BLIS-style cache blocking around a packed register-tile micro-kernel.
//
//   for jc over N by NC:            B block (KC x NC, packed, widened to f32) lives in L3
//     for pc over K by KC:          pack B block
//       for ic over M by MC:        A block (MC x KC, packed) lives in L2
//         for jr over NC by NR:     B tile (KC x NR) streams from L2 / stays in L1
//           for ir over MC by MR:   micro-kernel: C[MR,NR] (+)= Ap · Bp
//
// MR x NR is the kernel set's register tile (6x16 AVX2 and portable, 12x32 AVX-512); MC, KC, NC
// come from the cache sizes (cache_info.h) at run time, see blocking_for().
//
// Threads take rectangular chunks of C from a shared counter (dynamic, since the machine is
// often shared); each chunk runs the loops above with per-thread packing buffers. Chunks split N
// first, so each element of B is packed once. Tiny M or N skip packing (dot / axpy kernels).
#include "cpu/gemm.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "core/errors.h"
#include "core/parallel.h"
#include "cpu/cache_info.h"
#include "cpu/gemm_internal.h"
#include "cpu/isa.h"

namespace sparsify {
namespace gemm_detail {
namespace {

// ---- blocking ----

std::atomic<bool> g_blocking_forced{false};
Blocking g_blocking_override{0, 0, 0};

Blocking derive_blocking(const Kernels& kr) {
  const CacheSizes& cs = cache_sizes();
  int64_t l2 = cs.l2, l3 = cs.l3 > 0 ? cs.l3 : 4 * cs.l2;
  // KC = 768 covers the SAE width d_in = 768 in one K pass, so C is written once; only a small
  // L2 lowers it (a B tile of KC x nr floats stays under 1/8 of L2).
  int64_t kc = std::max<int64_t>(64, std::min<int64_t>(768, l2 / (8 * kr.nr * 4)) / 8 * 8);
  // The packed A block (MC x KC floats) takes 27/32 of L2; the rest holds the B tile streaming
  // through and the C rows.
  int64_t mc = std::max<int64_t>(kr.mr, (l2 * 27 / 32) / (kc * 4) / kr.mr * kr.mr);
  // The packed B block (KC x NC floats) takes at most 3/8 of L3.
  int64_t nc = std::clamp<int64_t>((l3 * 3 / 8) / (kc * 4), 256, 8192) / kr.nr * kr.nr;
  return Blocking{mc, kc, nc};
}

// ---- kernel choice ----

bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // F16C is CPUID leaf 1, ECX bit 29 (read directly: g++ 10, the release compiler, has no
  // __builtin_cpu_supports("f16c")).
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29));
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
#else
  return false;
#endif
}

// AVX-512F for the kernels themselves; the B packers they share are the AVX2 ones. (libgcc's
// check includes the OS saving the zmm state.)
bool cpu_has_avx512() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

std::vector<std::string> available_names() {
  std::vector<std::string> out;
  if (avx512_kernels() && cpu_has_avx512()) out.push_back("avx512");
  if (avx2_kernels() && cpu_has_avx2()) out.push_back("avx2");
  out.push_back("portable");
  return out;
}

std::string available_list() {
  std::string s;
  for (const std::string& n : available_names()) s += (s.empty() ? "" : ", ") + n;
  return s;
}

// The kernel set called `name`, or nullptr with the reason in *why.
const Kernels* kernels_named(const std::string& name, std::string* why) {
  if (name == "portable") return &portable_kernels();
  if (name == "avx2") {
    if (!avx2_kernels()) *why = "this build has no AVX2 kernels (not an x86-64 build)";
    else if (!cpu_has_avx2()) *why = "this CPU lacks AVX2, FMA or F16C";
    else return avx2_kernels();
    return nullptr;
  }
  if (name == "avx512") {
    if (!avx512_kernels()) *why = "this build has no AVX-512 kernels (not an x86-64 build)";
    else if (!cpu_has_avx512()) *why = "this CPU lacks AVX-512F (or AVX2, FMA, F16C)";
    else return avx512_kernels();
    return nullptr;
  }
  *why = "unknown kernel set (expected auto, avx512, avx2 or portable)";
  return nullptr;
}

const Kernels& best_kernels() {
  if (avx512_kernels() && cpu_has_avx512()) return *avx512_kernels();
  if (avx2_kernels() && cpu_has_avx2()) return *avx2_kernels();
  return portable_kernels();
}

// The process-wide choice: $SPARSIFY_GEMM (auto, avx512, avx2, portable) read once, or an
// error message when it names a set this CPU cannot run.
struct EnvChoice {
  const Kernels* kernels = nullptr;
  std::string error;
};

const EnvChoice& env_choice() {
  static const EnvChoice c = [] {
    EnvChoice out;
    const char* env = std::getenv("SPARSIFY_GEMM");
    std::string name = env ? env : "";
    if (name.empty() || name == "auto") {
      out.kernels = &best_kernels();
      return out;
    }
    std::string why;
    out.kernels = kernels_named(name, &why);
    if (!out.kernels) out.error = "SPARSIFY_GEMM=" + name + ": " + why + " (this CPU can run: " + available_list() + ")";
    return out;
  }();
  return c;
}

std::atomic<const Kernels*> g_forced{nullptr};

const Kernels& kernels() {
  if (const Kernels* f = g_forced.load(std::memory_order_relaxed)) return *f;
  const EnvChoice& c = env_choice();
  if (!c.kernels) fail(ErrorKind::Value, c.error);
  return *c.kernels;
}

Blocking blocking(const Kernels& kr) {
  if (g_blocking_forced.load(std::memory_order_relaxed)) {
    Blocking b = g_blocking_override;
    b.mc = std::max<int64_t>(kr.mr, b.mc / kr.mr * kr.mr);
    b.nc = std::max<int64_t>(kr.nr, b.nc / kr.nr * kr.nr);
    return b;
  }
  return blocking_for(kr);
}

// A 64-byte aligned scratch buffer that only grows; one per thread and role, so nested calls
// (one per tile from a parallel region) do not allocate.
struct Scratch {
  float* p = nullptr;
  size_t cap = 0;
  ~Scratch() { std::free(p); }
  float* get(size_t n) {
    if (n > cap) {
      std::free(p);
      p = nullptr;
      cap = 0;
      size_t bytes = (n * sizeof(float) + 63) & ~size_t(63);
      p = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!p) fail(ErrorKind::Internal, "gemm: out of memory for a packing buffer of " + std::to_string(bytes) + " bytes");
      cap = n;
    }
    return p;
  }
};
thread_local Scratch tl_pack_a, tl_pack_b;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

struct Problem {
  int64_t M, N, K;
  const float* A;
  int64_t lda;
  GemmB B;
  float* C;
  int64_t ldc;
  bool accumulate;
  const float* bias;
};

// Even K blocks (K = 1000 with KC = 768 -> 2 x 504 rather than 768 + 232), a multiple of 8 for
// the packers.
int64_t k_step(int64_t K, const Blocking& bl) {
  if (K <= 0) return 0;
  int64_t kblocks = ceil_div(K, bl.kc);
  return std::min(K, round_up(ceil_div(K, kblocks), 8));
}

// Columns per K block of a GemmPackedB: whole panels plus zero panels, so that the widest tile
// starting on the last real panel stays inside its K block.
int64_t packed_cols(int64_t N) { return round_up(N, PANEL) + (MAX_NR - PANEL); }

// Computes C[m0:m1, n0:n1] with the blocked loops. With `pre`, B comes already packed (its
// columns [pre_n0, ...) map to C's columns [0, ...)) instead of being packed per block.
void run_chunk(const Kernels& kr, const Problem& p, const Blocking& bl, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
               const GemmPackedB* pre = nullptr, int64_t pre_n0 = 0) {
  const int64_t MR = kr.mr, NR = kr.nr;
  int64_t kstep = pre ? pre->kstep : k_step(p.K, bl);
  int64_t pre_cols = pre ? packed_cols(pre->N) : 0;
  alignas(64) float edge[MAX_MR * MAX_NR];
  for (int64_t jc = n0; jc < n1; jc += bl.nc) {
    int64_t nc = std::min(bl.nc, n1 - jc);
    int64_t ntiles = ceil_div(nc, NR);
    for (int64_t pc = 0; pc < p.K; pc += kstep) {
      int64_t kc = std::min(kstep, p.K - pc);
      // Tile t's B is the kc x NR block at Bp + t * kc * NR (NR / PANEL panels back to back).
      const float* Bp;
      if (pre) {  // layout of gemm_pack_b: K blocks of kstep, each holding every panel
        Bp = pre->data.get() + pc * pre_cols + (pre_n0 + jc) * kc;
      } else {  // panels past nc are packed as zeros (cols = 0)
        int64_t npanels = ntiles * (NR / PANEL);
        float* buf = tl_pack_b.get(size_t(npanels * kc * PANEL));
        for (int64_t jp = 0; jp < npanels; ++jp)
          kr.pack_b(p.B, jc + jp * PANEL, std::clamp<int64_t>(nc - jp * PANEL, 0, PANEL), pc, kc,
                    buf + jp * kc * PANEL);
        Bp = buf;
      }
      bool add = pc > 0 || p.accumulate;
      bool last = pc + kc == p.K;
      for (int64_t ic = m0; ic < m1; ic += bl.mc) {
        int64_t mc = std::min(bl.mc, m1 - ic);
        int64_t mpanels = ceil_div(mc, MR);
        float* Ap = tl_pack_a.get(size_t(mpanels * kc * MR + 8));  // +8: pack_a's overlapping stores
        for (int64_t ip = 0; ip < mpanels; ++ip)
          kr.pack_a(p.A + (ic + ip * MR) * p.lda + pc, p.lda, std::min<int64_t>(MR, mc - ip * MR), kc,
                    Ap + ip * kc * MR);
        for (int64_t jt = 0; jt < ntiles; ++jt) {
          int64_t col = jc + jt * NR;
          int64_t cols = std::min<int64_t>(NR, n1 - col);
          const float* btile = Bp + jt * kc * NR;
          const float* bias = last && p.bias ? p.bias + col : nullptr;
          for (int64_t ip = 0; ip < mpanels; ++ip) {
            int64_t row = ic + ip * MR;
            int64_t rows = std::min<int64_t>(MR, m1 - row);
            const float* apanel = Ap + ip * kc * MR;
            float* c = p.C + row * p.ldc + col;
            if (rows == MR && cols == NR) {
              kr.micro(kc, apanel, btile, c, p.ldc, add, bias);
            } else {  // edge tile: compute the full tile aside, merge the valid part
              kr.micro(kc, apanel, btile, edge, NR, false, nullptr);
              for (int64_t i = 0; i < rows; ++i)
                for (int64_t j = 0; j < cols; ++j) {
                  float v = edge[i * NR + j] + (bias ? bias[j] : 0.f);
                  float* d = c + i * p.ldc + j;
                  *d = add ? *d + v : v;
                }
            }
          }
        }
      }
    }
  }
}

void run_packed(const Kernels& kr, const Problem& p, const GemmPackedB* pre = nullptr, int64_t pre_n0 = 0) {
  Blocking bl = blocking(kr);
  std::atomic<int64_t> next{0};
  parallel_threads([&](int, int nt) {
    // The chunk grid depends only on nt, so every thread derives the same one. Chunks are at
    // least 256 columns wide (A packing amortised) and 96 rows high (B packing amortised).
    int64_t cn = 1, cm = 1;
    if (nt > 1) {
      int64_t target = 4 * int64_t(nt);
      cn = std::clamp<int64_t>(p.N / 256, 1, target);
      int64_t cm_max = std::max<int64_t>(1, p.M / 96);
      cm = std::clamp<int64_t>(ceil_div(target, cn), 1, cm_max);
      // A chunk count that is a multiple of nt keeps the last round even (3x3 -> 3x4 for 2 threads).
      while ((cn * cm) % nt != 0 && cm < cm_max) ++cm;
    }
    int64_t wn = round_up(ceil_div(p.N, cn), kr.nr), wm = round_up(ceil_div(p.M, cm), kr.mr);
    cn = ceil_div(p.N, wn), cm = ceil_div(p.M, wm);
    for (;;) {
      int64_t c = next.fetch_add(1);
      if (c >= cn * cm) break;
      int64_t ci = c % cm, cj = c / cm;
      run_chunk(kr, p, bl, ci * wm, std::min(p.M, (ci + 1) * wm), cj * wn, std::min(p.N, (cj + 1) * wn), pre,
                pre_n0);
    }
  });
}

// M <= 4: no packing; B streams through the dot (B [N,K]) or axpy (B [K,N]) kernel once.
void run_small_m(const Kernels& kr, const Problem& p) {
  constexpr int64_t NB = 16;
  int64_t blocks = ceil_div(p.N, NB);
  int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, p.M * p.K * NB));
  parallel_for(blocks, grain, [&](int64_t b0, int64_t b1) {
    int64_t n0 = b0 * NB, n1 = std::min(p.N, b1 * NB);
    auto fn = p.B.trans ? kr.dot_rows : kr.axpy_rows;
    fn(p.M, p.K, p.A, p.lda, p.B, n0, n1, p.C, p.ldc, p.accumulate, p.bias);
  });
}

// N <= 4 (M > 4): B is widened to f32 [N,K] (tiny), then dot products over groups of 4 rows.
void run_small_n(const Kernels& kr, const Problem& p) {
  std::vector<float> bt(size_t(p.N * p.K));
  for (int64_t n = 0; n < p.N; ++n)
    for (int64_t k = 0; k < p.K; ++k) {
      int64_t idx = p.B.trans ? n * p.B.ld + k : k * p.B.ld + n;
      bt[size_t(n * p.K + k)] = load_as_f32(p.B.data, p.B.dtype, idx);
    }
  GemmB b{bt.data(), DType::F32, p.K, true};
  int64_t groups = ceil_div(p.M, 4);
  int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, 4 * p.N * p.K));
  parallel_for(groups, grain, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      int64_t m = g * 4;
      kr.dot_rows(std::min<int64_t>(4, p.M - m), p.K, p.A + m * p.lda, p.lda, b, 0, p.N, p.C + m * p.ldc, p.ldc,
                  p.accumulate, p.bias);
    }
  });
}

}  // namespace

GemmPackedB pack_b_all(const Kernels& kr, int64_t N, int64_t K, const GemmB& B) {
  GemmPackedB out;
  out.N = N, out.K = K;
  out.kstep = k_step(K, blocking(kr));
  int64_t cols = packed_cols(N), npanels = cols / PANEL;
  size_t n = size_t(std::max<int64_t>(1, cols * K));
  float* raw = static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) & ~size_t(63)));
  if (!raw) fail(ErrorKind::Value, "gemm_pack_b: out of memory packing B [" + std::to_string(N) + "," + std::to_string(K) + "]");
  out.data = std::shared_ptr<float>(raw, [](float* q) { std::free(q); });
  int64_t kstep = out.kstep;
  int64_t kblocks = K > 0 ? ceil_div(K, kstep) : 0;
  parallel_for(kblocks * npanels, 16, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      int64_t kb = t / npanels, jp = t % npanels;
      int64_t pc = kb * kstep, kc = std::min(kstep, K - pc);
      kr.pack_b(B, jp * PANEL, std::clamp<int64_t>(N - jp * PANEL, 0, PANEL), pc, kc,
                raw + pc * cols + jp * kc * PANEL);
    }
  });
  return out;
}

Blocking blocking_for(const Kernels& kr) { return derive_blocking(kr); }

void set_blocking(int64_t mc, int64_t kc, int64_t nc) {
  if (mc <= 0) {
    g_blocking_forced.store(false);
    return;
  }
  g_blocking_override = Blocking{mc, std::max<int64_t>(8, kc / 8 * 8), nc};
  g_blocking_forced.store(true);
}

}  // namespace gemm_detail

using namespace gemm_detail;

const char* gemm_kernel_name() { return kernels().name; }

Isa active_isa() {
  const Kernels* k = &kernels();
  if (k == avx512_kernels()) return Isa::Avx512;
  if (k == avx2_kernels()) return Isa::Avx2;
  return Isa::Portable;
}

void gemm_force_kernels(const std::string& name) {
  if (name.empty() || name == "auto") {
    g_forced.store(nullptr);
    return;
  }
  std::string why;
  const Kernels* k = kernels_named(name, &why);
  if (!k) fail(ErrorKind::Value, "gemm kernels '" + name + "': " + why + " (this CPU can run: " + available_list() + ")");
  g_forced.store(k);
}

std::vector<std::string> gemm_available_kernels() { return available_names(); }

GemmInfo gemm_info() {
  const Kernels& kr = kernels();
  Blocking b = blocking(kr);
  const CacheSizes& cs = cache_sizes();
  return GemmInfo{kr.name, kr.mr, kr.nr, b.mc, b.kc, b.nc, cs.l1d, cs.l2, cs.l3, cs.source};
}

GemmPackedB gemm_pack_b(int64_t N, int64_t K, const GemmB& B) {
  SPX_CHECK(N >= 0 && K >= 0, Shape, "gemm_pack_b: negative size N=" + std::to_string(N) + " K=" + std::to_string(K));
  return pack_b_all(kernels(), N, K, B);
}

void gemm_prepacked(int64_t M, int64_t n0, int64_t n1, const float* A, int64_t lda, const GemmPackedB& B, float* C,
                    int64_t ldc, bool accumulate, const float* bias) {
  SPX_CHECK(0 <= n0 && n0 <= n1 && n1 <= B.N, Shape,
            "gemm_prepacked: column range [" + std::to_string(n0) + ", " + std::to_string(n1) +
                ") is outside the packed B's " + std::to_string(B.N) + " columns");
  SPX_CHECK(n0 % PANEL == 0, Value, "gemm_prepacked: n0 = " + std::to_string(n0) + " is not a multiple of 16");
  int64_t N = n1 - n0;
  if (M <= 0 || N <= 0) return;
  if (B.K <= 0) {
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        float v = bias ? bias[n] : 0.f;
        C[m * ldc + n] = accumulate ? C[m * ldc + n] + v : v;
      }
    return;
  }
  Problem p{M, N, B.K, A, lda, GemmB{nullptr, DType::F32, 0, true}, C, ldc, accumulate, bias};
  run_packed(kernels(), p, &B, n0);
}

void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const GemmB& B, float* C, int64_t ldc,
          bool accumulate, const float* bias) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // empty sum: C = (C) + bias
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        float v = bias ? bias[n] : 0.f;
        C[m * ldc + n] = accumulate ? C[m * ldc + n] + v : v;
      }
    return;
  }
  Problem p{M, N, K, A, lda, B, C, ldc, accumulate, bias};
  const Kernels& kr = kernels();
  if (M <= 4)
    run_small_m(kr, p);
  else if (N <= 4)
    run_small_n(kr, p);
  else
    run_packed(kr, p);
}

}  // namespace sparsify
