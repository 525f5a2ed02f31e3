// The tensor-core main loop shared by the dense GEMM (gemm.cu) and the fused TopK encoder
// (sae_encode.cu): one CTA of 256 threads computes a BM x 128 tile of  A · Bᵀ  with
//   A [rows_a, Kp] and B [rows_b, Kp], both 16-bit (bf16 or f16), K contiguous (the nn.Linear
//   layout: x @ Wᵀ), Kp a multiple of 32 (callers zero-pad K), f32 accumulation.
// Pipeline: STAGES-deep cp.async (16-byte, zero-filled past the last row) global->shared copies
// of 32-wide K slices, ldmatrix.x4 shared->register fragments, mma.sync m16n8k16 (sm_80+).
// Shared tiles are rows of 64 bytes (32 halves = four 16-byte chunks); chunk c of row r is stored
// at chunk c ^ ((r >> 1) & 3), which makes both the cp.async stores and the 8-row ldmatrix reads
// bank-conflict free (8 rows x 16 B land in 8 distinct 16-byte bank groups).
// Warps: 2 (M) x 4 (N); warp tile (BM/2) x 32 = MFRAG x 4 mma tiles of 16 x 8.
//
// CPU reference: gemm_reference in native/ref (double accumulation); the difference is the
// rounding of the inputs to bf16/f16 (done by the caller) and f32 accumulation order.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace sparsify {
namespace cuda {

constexpr int MMA_THREADS = 256;
constexpr int TILE_N = 128;
constexpr int TILE_K = 32;
constexpr int ROW_BYTES = TILE_K * 2;  // 64

template <int BM>
constexpr int stage_bytes() { return (BM + TILE_N) * ROW_BYTES; }

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

#ifdef SPARSIFY_CUDA_EMU
// The emulated device executes these instructions (native/cuda/emu/emu_ptx.cpp).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  ::spx_emu::cp_async16(dst, src, valid ? 16 : 0);
}
__device__ __forceinline__ void cp_async_commit() { ::spx_emu::cp_async_commit(); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { ::spx_emu::cp_async_wait(N); }
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) { ::spx_emu::ldmatrix_x4(r, addr); }
template <class T>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  ::spx_emu::mma_m16n8k16(std::is_same<T, __nv_bfloat16>::value ? ::spx_emu::MmaType::BF16 : ::spx_emu::MmaType::F16, d,
                          a, b0, b1);
}
#else
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  int n = valid ? 16 : 0;  // src-size 0: fill the 16 bytes with zeros, read nothing
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

template <class T>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same<T, __nv_bfloat16>::value) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

#endif

// Byte offset of 16-byte chunk `c` (0..3) of row `r` in a swizzled tile.
__device__ __forceinline__ uint32_t swz(int r, int c) { return uint32_t(r * ROW_BYTES + ((c ^ ((r >> 1) & 3)) << 4)); }

// Issues the cp.async copies of K slice `kt` of the A rows [m0, m0+BM) and B rows [n0, n0+128)
// into one stage. Rows past the end are zero-filled (the source pointer stays in bounds).
template <class T, int BM>
__device__ __forceinline__ void load_stage(const T* __restrict__ A, const T* __restrict__ B, int64_t rows_a,
                                           int64_t rows_b, int64_t Kp, int64_t m0, int64_t n0, int kt,
                                           char* stage) {
  uint32_t sa = smem_u32(stage), sb = sa + BM * ROW_BYTES;
  int t = threadIdx.x;
#pragma unroll
  for (int i = 0; i < BM * 4 / MMA_THREADS; ++i) {
    int c = t + i * MMA_THREADS, r = c >> 2, ch = c & 3;
    bool ok = m0 + r < rows_a;
    const T* src = A + (ok ? (m0 + r) * Kp + int64_t(kt) * TILE_K + ch * 8 : 0);
    cp_async16(sa + swz(r, ch), src, ok);
  }
#pragma unroll
  for (int i = 0; i < TILE_N * 4 / MMA_THREADS; ++i) {
    int c = t + i * MMA_THREADS, r = c >> 2, ch = c & 3;
    bool ok = n0 + r < rows_b;
    const T* src = B + (ok ? (n0 + r) * Kp + int64_t(kt) * TILE_K + ch * 8 : 0);
    cp_async16(sb + swz(r, ch), src, ok);
  }
}

// acc[mi][ni][e]: rows m0 + warp_m*(BM/2) + mi*16 + lane/4 (+8 for e >= 2),
//                 cols n0 + warp_n*32 + ni*8 + (lane%4)*2 + (e & 1).
// Leaves no cp.async in flight and ends with __syncthreads(), so callers may reuse `smem`.
template <class T, int BM, int STAGES>
__device__ __forceinline__ void mma_tile(const T* __restrict__ A, const T* __restrict__ B, int64_t rows_a,
                                         int64_t rows_b, int64_t Kp, int64_t m0, int64_t n0, char* smem,
                                         float (&acc)[BM / 32][4][4]) {
  constexpr int MFRAG = BM / 32;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warp_m = warp >> 2, warp_n = warp & 3;
  const int KT = int(Kp / TILE_K);
#pragma unroll
  for (int mi = 0; mi < MFRAG; ++mi)
#pragma unroll
    for (int ni = 0; ni < 4; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0.f;

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < KT) load_stage<T, BM>(A, B, rows_a, rows_b, Kp, m0, n0, s, smem + s * stage_bytes<BM>());
    cp_async_commit();  // empty groups keep the group count uniform
  }
  for (int kt = 0; kt < KT; ++kt) {
    cp_async_wait<STAGES - 2>();  // slice kt has landed (for this thread) ...
    __syncthreads();              // ... for all threads; and stage (kt-1)%STAGES is no longer read
    int next = kt + STAGES - 1;
    if (next < KT) load_stage<T, BM>(A, B, rows_a, rows_b, Kp, m0, n0, next, smem + (next % STAGES) * stage_bytes<BM>());
    cp_async_commit();
    const char* st = smem + (kt % STAGES) * stage_bytes<BM>();
    uint32_t sa = smem_u32(st), sb = sa + BM * ROW_BYTES;
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {
      uint32_t af[MFRAG][4], bf[2][4];
#pragma unroll
      for (int mi = 0; mi < MFRAG; ++mi) {
        int r = warp_m * (BM / 2) + mi * 16 + (lane & 15);
        ldmatrix_x4(af[mi], sa + swz(r, ks * 2 + (lane >> 4)));
      }
#pragma unroll
      for (int nj = 0; nj < 2; ++nj) {
        int r = warp_n * 32 + nj * 16 + (lane & 7) + ((lane >> 4) << 3);
        ldmatrix_x4(bf[nj], sb + swz(r, ks * 2 + ((lane >> 3) & 1)));
      }
#pragma unroll
      for (int mi = 0; mi < MFRAG; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
          mma16816<T>(acc[mi][ni], af[mi], bf[ni >> 1][(ni & 1) * 2], bf[ni >> 1][(ni & 1) * 2 + 1]);
    }
  }
  cp_async_wait<0>();
  __syncthreads();
}

}  // namespace cuda
}  // namespace sparsify
