// Driver of the bf16-operand GEMM (gemm_bf16.h): rounding, packing, the blocked loops around
// the vdpbf16ps micro-kernel (gemm_avx512_bf16.cpp), and the widening path on the f32 GEMM.
//
//   for pc over K by KC:            packed B block (bf16 pairs, whole N, packed once per call site)
//     for ic over M by MC:          pack A block (MC x KC bf16 pairs)
//       for jr over columns by 32:  B tile (KC x 32)
//         for ir over MC by 12:     micro-kernel C[12,32] (+)= Ap · Bp
//
// KC and MC are the f32 AVX-512 set's (gemm_detail::blocking_for): bf16 halves the bytes of each
// block, so the blocks fit the same caches with room to spare.
#include "cpu/gemm_bf16.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "core/errors.h"
#include "core/parallel.h"
#include "cpu/gemm_internal.h"
#include "cpu/isa.h"

namespace sparsify {
namespace gemm_bf16_detail {
// gemm_avx512_bf16.cpp
void micro_dpbf16_12x32(int64_t kp, const uint32_t* Ap, const uint32_t* Bp, float* C, int64_t ldc, bool add,
                        const float* bias);
bool dpbf16_built();
}  // namespace gemm_bf16_detail

namespace {

using namespace gemm_bf16_detail;

constexpr int MR = 12, NR = 32, PANEL = 16;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

bool cpu_has_dpbf16() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  // AVX512_BF16: CPUID leaf 7 sub-leaf 1, EAX bit 5.
  const bool bf16 = __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && (eax & (1u << 5));
  return bf16 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
#else
  return false;
#endif
}

std::atomic<bool> g_force_widen{false};

bool use_dpbf16() {
  return active_isa() == Isa::Avx512 && gemm_bf16_has_dpbf16() && !g_force_widen.load(std::memory_order_relaxed);
}

// A 64-byte aligned buffer that only grows; one per thread and role (nested calls do not allocate).
template <class T>
struct Scratch {
  T* p = nullptr;
  size_t cap = 0;
  ~Scratch() { std::free(p); }
  T* get(size_t n) {
    if (n > cap) {
      std::free(p);
      p = nullptr;
      cap = 0;
      size_t bytes = (n * sizeof(T) + 63) & ~size_t(63);
      p = static_cast<T*>(std::aligned_alloc(64, bytes));
      if (!p) fail(ErrorKind::Internal, "gemm_bf16: out of memory for a buffer of " + std::to_string(bytes) + " bytes");
      cap = n;
    }
    return p;
  }
};
thread_local Scratch<uint32_t> tl_pack_a;
thread_local Scratch<float> tl_widen_a;

// f32_to_bf16_rne without branches (same results), for loops the compiler vectorizes.
inline uint16_t f32_to_bf16_rne_branchless(float x) {
  uint32_t u;
  __builtin_memcpy(&u, &x, 4);
  const uint32_t rne = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t zero = (u >> 16) & 0x8000u, nan = (u >> 16) | 0x0040u;
  const uint32_t r = (u & 0x7f800000u) == 0 ? zero : (u & 0x7fffffffu) > 0x7f800000u ? nan : rne;
  return uint16_t(r);
}

inline uint32_t pair_of(uint16_t lo, uint16_t hi) { return uint32_t(lo) | (uint32_t(hi) << 16); }

// Rows [0, rows) (rows <= MR), depth [k0, k0+kc) of bf16 A into dst[p*MR + i]; rows past `rows`
// and the odd tail are zero.
void pack_a(const uint16_t* A, int64_t lda, int64_t rows, int64_t k0, int64_t kc, uint32_t* dst) {
  const int64_t kp = ceil_div(kc, 2);
  for (int64_t i = 0; i < MR; ++i) {
    if (i >= rows) {
      for (int64_t p = 0; p < kp; ++p) dst[p * MR + i] = 0;
      continue;
    }
    const uint16_t* a = A + i * lda + k0;
    const int64_t full = kc / 2;
    for (int64_t p = 0; p < full; ++p) dst[p * MR + i] = pair_of(a[2 * p], a[2 * p + 1]);
    if (kc & 1) dst[full * MR + i] = pair_of(a[kc - 1], 0);
  }
}

// Element (k, n) of op(B) rounded to bf16.
inline uint16_t b_at(const GemmB& B, int64_t k, int64_t n) {
  const int64_t idx = B.trans ? n * B.ld + k : k * B.ld + n;
  if (B.dtype == DType::BF16) return static_cast<const uint16_t*>(B.data)[idx];
  return f32_to_bf16_rne(load_as_f32(B.data, B.dtype, idx));
}

// Columns [n0, n0+cols) (cols <= PANEL), depth [k0, k0+kc) of op(B) into dst[p*PANEL + j].
void pack_b_panel(const GemmB& B, int64_t n0, int64_t cols, int64_t k0, int64_t kc, uint32_t* dst) {
  const int64_t kp = ceil_div(kc, 2);
  for (int64_t j = 0; j < PANEL; ++j) {
    if (j >= cols) {
      for (int64_t p = 0; p < kp; ++p) dst[p * PANEL + j] = 0;
      continue;
    }
    const int64_t n = n0 + j;
    if (B.trans && B.dtype == DType::F32) {  // the encoder's case: a contiguous f32 row of W_enc
      // Rounded in chunks by a branch-free loop the compiler vectorizes, then spread over the panel
      // (a row's consecutive bf16 pair is one uint32 of the layout).
      const float* b = static_cast<const float*>(B.data) + n * B.ld + k0;
      alignas(64) uint16_t row[256];
      for (int64_t c0 = 0; c0 < kc; c0 += 256) {
        const int64_t cn = std::min<int64_t>(256, kc - c0);
        for (int64_t q = 0; q < cn; ++q) row[q] = f32_to_bf16_rne_branchless(b[c0 + q]);
        if (cn & 1) row[cn] = 0;
        const int64_t p0 = c0 / 2, pn = ceil_div(cn, 2);
        for (int64_t p = 0; p < pn; ++p) dst[(p0 + p) * PANEL + j] = pair_of(row[2 * p], row[2 * p + 1]);
      }
    } else {
      for (int64_t p = 0; p < kp; ++p) {
        const int64_t k = k0 + 2 * p;
        dst[p * PANEL + j] = pair_of(b_at(B, k, n), k + 1 < k0 + kc ? b_at(B, k + 1, n) : 0);
      }
    }
  }
}

// Packed columns per K block: whole panels plus one zero panel (a 32-column tile starting on
// the last real panel stays inside its block).
int64_t packed_panels(int64_t N) { return round_up(N, PANEL) / PANEL + 1; }

struct Bf16Blocking {
  int64_t mc, kc;
};
Bf16Blocking bf16_blocking() {
  const gemm_detail::Kernels* k512 = gemm_detail::avx512_kernels();
  gemm_detail::Blocking b = gemm_detail::blocking_for(k512 ? *k512 : gemm_detail::portable_kernels());
  return Bf16Blocking{std::max<int64_t>(MR, b.mc / MR * MR), std::max<int64_t>(8, b.kc / 8 * 8)};
}

// C[m0:m1, cols c0:c1) of the product, with C's column 0 = packed column n0.
void run_chunk(const GemmBf16PackedB& B, int64_t n0, int64_t m0, int64_t m1, int64_t c0, int64_t c1, const uint16_t* A,
               int64_t lda, float* C, int64_t ldc, const float* bias, int64_t mc_block) {
  alignas(64) float edge[MR * NR];
  const int64_t npanels = packed_panels(B.N);
  const int64_t K = B.K, kstep = B.kstep;
  for (int64_t pc = 0; pc < K; pc += kstep) {
    const int64_t kc = std::min(kstep, K - pc), kp = ceil_div(kc, 2);
    const uint32_t* block = reinterpret_cast<const uint32_t*>(B.pairs.get()) + (pc / 2) * PANEL * npanels;
    const bool add = pc > 0, last = pc + kc == K;
    for (int64_t ic = m0; ic < m1; ic += mc_block) {
      const int64_t mc = std::min(mc_block, m1 - ic), mpanels = ceil_div(mc, MR);
      uint32_t* Ap = tl_pack_a.get(size_t(mpanels * kp * MR));
      for (int64_t ip = 0; ip < mpanels; ++ip)
        pack_a(A + (ic + ip * MR) * lda, lda, std::min<int64_t>(MR, mc - ip * MR), pc, kc, Ap + ip * kp * MR);
      for (int64_t col = c0; col < c1; col += NR) {
        const int64_t cols = std::min<int64_t>(NR, c1 - col);
        const uint32_t* btile = block + ((n0 + col) / PANEL) * kp * PANEL;
        const float* bi = last && bias ? bias + col : nullptr;
        for (int64_t ip = 0; ip < mpanels; ++ip) {
          const int64_t row = ic + ip * MR, rows = std::min<int64_t>(MR, m1 - row);
          float* c = C + row * ldc + col;
          if (rows == MR && cols == NR) {
            micro_dpbf16_12x32(kp, Ap + ip * kp * MR, btile, c, ldc, add, bi);
          } else {
            micro_dpbf16_12x32(kp, Ap + ip * kp * MR, btile, edge, NR, false, nullptr);
            for (int64_t i = 0; i < rows; ++i)
              for (int64_t j = 0; j < cols; ++j) {
                const float v = edge[i * NR + j] + (bi ? bi[j] : 0.f);
                float* d = c + i * ldc + j;
                *d = add ? *d + v : v;
              }
          }
        }
      }
    }
  }
}

}  // namespace

void round_to_bf16(int64_t n, const float* src, uint16_t* dst) {
  parallel_for(n, 1 << 16, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dst[i] = f32_to_bf16_rne(src[i]);
  });
}

bool gemm_bf16_has_dpbf16() {
  static const bool has = dpbf16_built() && gemm_detail::avx512_kernels() && cpu_has_dpbf16();
  return has;
}

void gemm_bf16_force_widen(bool on) { g_force_widen.store(on); }

const char* gemm_bf16_path_name() {
  if (use_dpbf16()) return "avx512_bf16";
  const std::string k = gemm_kernel_name();
  if (k == "avx512") return "widen-avx512";
  if (k == "avx2") return "widen-avx2";
  return "widen-portable";
}

GemmBf16PackedB gemm_bf16_pack_b(int64_t N, int64_t K, const GemmB& B) {
  SPX_CHECK(N >= 0 && K >= 0, Shape, "gemm_bf16_pack_b: negative size N=" + std::to_string(N) + " K=" + std::to_string(K));
  SPX_CHECK(B.dtype == DType::F32 || B.dtype == DType::BF16 || B.dtype == DType::F16, DType,
            "gemm_bf16_pack_b: B must be f32, bf16 or f16");
  GemmBf16PackedB out;
  out.N = N, out.K = K;
  out.dpbf16 = use_dpbf16();
  if (!out.dpbf16) {
    // bf16(B) as a [N,K] bf16 copy, widened exactly by the f32 GEMM's packer.
    std::vector<uint16_t> rb(size_t(std::max<int64_t>(1, N * K)));
    parallel_for(N, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t n = r0; n < r1; ++n)
        for (int64_t k = 0; k < K; ++k) rb[size_t(n * K + k)] = b_at(B, k, n);
    });
    out.widened = gemm_pack_b(N, K, GemmB{rb.data(), DType::BF16, K, true});
    out.kstep = out.widened.kstep;
    return out;
  }
  const Bf16Blocking bl = bf16_blocking();
  const int64_t kblocks = K > 0 ? ceil_div(K, bl.kc) : 0;
  out.kstep = K > 0 ? std::min(round_up(K, 2), round_up(ceil_div(K, kblocks), 8)) : 0;
  const int64_t npanels = packed_panels(N);
  // Each K block of kstep (even) holds kstep/2 pairs per panel; the last may be shorter.
  const size_t words = size_t(std::max<int64_t>(1, ceil_div(K, 2) * PANEL * npanels));
  uint16_t* raw = static_cast<uint16_t*>(std::aligned_alloc(64, (words * 4 + 63) & ~size_t(63)));
  if (!raw) fail(ErrorKind::Value, "gemm_bf16_pack_b: out of memory packing B [" + std::to_string(N) + "," + std::to_string(K) + "]");
  out.pairs = std::shared_ptr<uint16_t>(raw, [](uint16_t* q) { std::free(q); });
  uint32_t* dst = reinterpret_cast<uint32_t*>(raw);
  const int64_t kstep = out.kstep;
  const int64_t nblocks = K > 0 ? ceil_div(K, kstep) : 0;
  parallel_for(nblocks * npanels, 16, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t kb = t / npanels, jp = t % npanels;
      const int64_t pc = kb * kstep, kc = std::min(kstep, K - pc), kp = ceil_div(kc, 2);
      pack_b_panel(B, jp * PANEL, std::clamp<int64_t>(N - jp * PANEL, 0, PANEL), pc, kc,
                   dst + (pc / 2) * PANEL * npanels + jp * kp * PANEL);
    }
  });
  return out;
}

void gemm_bf16_prepacked(int64_t M, int64_t n0, int64_t n1, const uint16_t* A, int64_t lda, const GemmBf16PackedB& B,
                         float* C, int64_t ldc, const float* bias) {
  SPX_CHECK(0 <= n0 && n0 <= n1 && n1 <= B.N, Shape,
            "gemm_bf16_prepacked: column range [" + std::to_string(n0) + ", " + std::to_string(n1) +
                ") is outside the packed B's " + std::to_string(B.N) + " columns");
  SPX_CHECK(n0 % PANEL == 0, Value, "gemm_bf16_prepacked: n0 = " + std::to_string(n0) + " is not a multiple of 16");
  SPX_CHECK(B.dpbf16 == use_dpbf16(), Value,
            "gemm_bf16_prepacked: B was packed for another path than the current one (" +
                std::string(gemm_bf16_path_name()) + "); pack it again");
  const int64_t N = n1 - n0, K = B.K;
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) C[m * ldc + n] = bias ? bias[n] : 0.f;
    return;
  }
  if (!B.dpbf16) {  // widen A exactly (bf16 -> f32), then the f32 GEMM on the widened B
    float* Af = tl_widen_a.get(size_t(M * K));
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < K; ++k) Af[m * K + k] = bf16_to_f32(A[m * lda + k]);
    gemm_prepacked(M, n0, n1, Af, K, B.widened, C, ldc, false, bias);
    return;
  }
  const int64_t mc = bf16_blocking().mc;
  std::atomic<int64_t> next{0};
  parallel_threads([&](int, int nt) {
    // Chunks as in gemm.cpp: columns first (>= 256 wide), then rows (>= 96), ~4 per thread; the
    // grid depends only on nt (1 when nested in a parallel region), so every thread derives it.
    int64_t cn = 1, cm = 1;
    if (nt > 1) {
      const int64_t target = 4 * int64_t(nt);
      cn = std::clamp<int64_t>(N / 256, 1, target);
      cm = std::clamp<int64_t>(ceil_div(target, cn), 1, std::max<int64_t>(1, M / 96));
    }
    const int64_t wn = round_up(ceil_div(N, cn), NR), wm = round_up(ceil_div(M, cm), MR);
    cn = ceil_div(N, wn), cm = ceil_div(M, wm);
    for (;;) {
      const int64_t c = next.fetch_add(1);
      if (c >= cn * cm) break;
      const int64_t ci = c % cm, cj = c / cm;
      run_chunk(B, n0, ci * wm, std::min(M, (ci + 1) * wm), cj * wn, std::min(N, (cj + 1) * wn), A, lda, C, ldc,
                bias, mc);
    }
  });
}

}  // namespace sparsify
