// Hopper (sm_90a) tensor-core main loop with wgmma, the counterpart of mma_tile.cuh: one CTA of
// 2 warpgroups (256 threads) computes a BM x 128 tile of A · Bᵀ, A [rows_a, Kp] and B [rows_b, Kp]
// K-major 16-bit (B is the nn.Linear weight layout), f32 accumulate. Used by the dense GEMM
// (gemm.cu, BM = 128) and the fused TopK encoder (sae_encode.cu, BM = 64).
//   BM = 128: warpgroup g computes rows [64g, 64g+64) x 128 columns (wgmma.m64n128k16, 64 regs)
//   BM = 64:  warpgroup g computes 64 rows x columns [64g, 64g+64) (wgmma.m64n64k16, 32 regs)
// K slices of 64 go through a STAGES-deep cp.async pipeline (16-byte copies, zero-filled past
// the last row and past Kp). Shared tiles use the 128-byte swizzle that wgmma's descriptors
// describe: a row of 64 halves is 128 bytes, 16-byte chunk j of row r sits at chunk j ^ (r % 8),
// tiles start 1024-byte aligned, 8-row groups are 1024 bytes apart (the descriptor's stride
// offset); the 16-wide K steps inside a slice advance the start address by 32 bytes.
//
// Facts used (PTX ISA, "Asynchronous Warpgroup Level Matrix Multiply-Accumulate"): descriptor
// bits 0-13 start address >> 4, 16-29 leading offset >> 4, 32-45 stride offset >> 4, 62-63
// swizzle mode (1 = 128 B); the m64nNk16 accumulator fragment gives warp w of the warpgroup
// rows 16w..16w+15 laid out like mma.sync m16n8 C fragments, one per 8 columns; shared memory
// written through the generic proxy (cp.async) needs fence.proxy.async before wgmma reads it.
//
// NEVER RUN: written without a GPU. gemm.cu enables it only after both tile shapes reproduced the
// mma.sync kernel on the device (gemm_path()), so a layout mistake falls back instead of lying.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "cuda/mma_tile.cuh"

#if (defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)) || defined(SPARSIFY_CUDA_EMU)
#define SPX_HAVE_WGMMA 1
#endif

namespace sparsify {
namespace cuda {

constexpr int WG_BN = 128, WG_BK = 64, WG_THREADS = 256;
constexpr int WG_ROW_BYTES = WG_BK * 2;  // 128

template <int BM>
constexpr int wg_stage_bytes() { return (BM + WG_BN) * WG_ROW_BYTES; }
// Pipeline depth per tile shape (the GEMM and the encoder use the same, so the self-check of
// gemm.cu runs exactly the main loop the encoder runs).
template <int BM>
constexpr int wg_stages() { return BM == 128 ? 4 : 3; }
// Accumulator registers per thread.
template <int BM>
constexpr int wg_regs() { return BM == 128 ? 64 : 32; }

// Row and column (within the CTA tile) of accumulator i of this thread.
template <int BM>
__device__ __forceinline__ int wg_row(int i) {
  const int g = threadIdx.x >> 7, w = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
  return (BM == 128 ? 64 * g : 0) + 16 * w + (lane >> 2) + ((i & 2) ? 8 : 0);
}
template <int BM>
__device__ __forceinline__ int wg_col(int i) {
  const int g = threadIdx.x >> 7, lane = threadIdx.x & 31;
  return (BM == 128 ? 0 : 64 * g) + 8 * (i >> 2) + 2 * (lane & 3) + (i & 1);
}

__device__ __forceinline__ uint32_t wg_swz(int r, int j) { return uint32_t(r * WG_ROW_BYTES + ((j ^ (r & 7)) << 4)); }

__device__ __forceinline__ uint64_t wg_desc(uint32_t saddr) {
  uint64_t d = uint64_t((saddr & 0x3FFFF) >> 4);
  d |= uint64_t(16 >> 4) << 16;    // leading byte offset (not used by swizzled K-major tiles)
  d |= uint64_t(1024 >> 4) << 32;  // stride byte offset: 8 rows x 128 B
  d |= uint64_t(1) << 62;          // 128-byte swizzle
  return d;
}

// 1024-byte aligned shared address at or after p (the caller reserves 1024 bytes of slack).
__device__ __forceinline__ uint32_t wg_align1024(const void* p) { return (smem_u32(p) + 1023u) & ~1023u; }

#ifdef SPX_HAVE_WGMMA
#ifdef SPARSIFY_CUDA_EMU
// The emulated device executes these instructions (native/cuda/emu/emu_ptx.cpp); the arguments
// after the descriptors are those of the PTX below: scale-d = 1, imm-scale-a/b = 1, trans-a/b = 0.
__device__ __forceinline__ void wg_fence() { ::spx_emu::wgmma_fence(); }
__device__ __forceinline__ void wg_commit() { ::spx_emu::wgmma_commit(); }
__device__ __forceinline__ void wg_wait0() { ::spx_emu::wgmma_wait(0); }
__device__ __forceinline__ void fence_proxy_async() { ::spx_emu::fence_proxy_async(); }
template <int R>
__device__ __forceinline__ void wg_pin(float (&)[R]) {}
template <class T>
__device__ __forceinline__ void wgmma_n128(float (&d)[64], uint64_t desc_a, uint64_t desc_b) {
  ::spx_emu::wgmma_m64k16(std::is_same<T, __nv_bfloat16>::value ? ::spx_emu::MmaType::BF16 : ::spx_emu::MmaType::F16, 128,
                          d, desc_a, desc_b, 1, 1, 1, 0, 0);
}
template <class T>
__device__ __forceinline__ void wgmma_n64(float (&d)[32], uint64_t desc_a, uint64_t desc_b) {
  ::spx_emu::wgmma_m64k16(std::is_same<T, __nv_bfloat16>::value ? ::spx_emu::MmaType::BF16 : ::spx_emu::MmaType::F16, 64,
                          d, desc_a, desc_b, 1, 1, 1, 0, 0);
}
#else
__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Keeps the compiler from moving accumulator reads or writes across the asynchronous wgmma.
template <int R>
__device__ __forceinline__ void wg_pin(float (&d)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

template <class T>
__device__ __forceinline__ void wgmma_n128(float (&d)[64], uint64_t desc_a, uint64_t desc_b) {
  if constexpr (std::is_same<T, __nv_bfloat16>::value) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, "
        "%64, %65, p, 1, 1, 0, 0;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(desc_a), "l"(desc_b), "r"(1));
  } else {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, "
        "%64, %65, p, 1, 1, 0, 0;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(desc_a), "l"(desc_b), "r"(1));
  }
}
template <class T>
__device__ __forceinline__ void wgmma_n64(float (&d)[32], uint64_t desc_a, uint64_t desc_b) {
  if constexpr (std::is_same<T, __nv_bfloat16>::value) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, "
        "%32, %33, p, 1, 1, 0, 0;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(desc_a), "l"(desc_b), "r"(1));
  } else {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, "
        "%32, %33, p, 1, 1, 0, 0;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(desc_a), "l"(desc_b), "r"(1));
  }
}
#endif  // SPARSIFY_CUDA_EMU
#endif

// Copies K slice kt of A rows [m0, m0+BM) and B rows [n0, n0+128) into the stage at `stage`.
template <class T, int BM>
__device__ __forceinline__ void wg_load_stage(const T* __restrict__ A, const T* __restrict__ B, int64_t rows_a,
                                              int64_t rows_b, int64_t Kp, int64_t m0, int64_t n0, int kt,
                                              uint32_t stage) {
  const int t = threadIdx.x;
  const int64_t k0 = int64_t(kt) * WG_BK;
#pragma unroll
  for (int i = 0; i < BM * 8 / WG_THREADS; ++i) {
    int c = t + i * WG_THREADS, r = c >> 3, j = c & 7;
    bool ok = m0 + r < rows_a && k0 + j * 8 < Kp;
    const T* src = A + (ok ? (m0 + r) * Kp + k0 + j * 8 : 0);
    cp_async16(stage + wg_swz(r, j), src, ok);
  }
#pragma unroll
  for (int i = 0; i < WG_BN * 8 / WG_THREADS; ++i) {
    int c = t + i * WG_THREADS, r = c >> 3, j = c & 7;
    bool ok = n0 + r < rows_b && k0 + j * 8 < Kp;
    const T* src = B + (ok ? (n0 + r) * Kp + k0 + j * 8 : 0);
    cp_async16(stage + BM * WG_ROW_BYTES + wg_swz(r, j), src, ok);
  }
}

// The tile: d[i] is the value at (wg_row<BM>(i), wg_col<BM>(i)) relative to (m0, n0). `base` is a
// 1024-byte aligned shared address with STAGES * wg_stage_bytes<BM>() bytes. Leaves no copy or
// wgmma in flight and ends with __syncthreads(), so callers may reuse the shared memory.
template <class T, int BM, int STAGES>
__device__ __forceinline__ void wg_tile(const T* __restrict__ A, const T* __restrict__ B, int64_t rows_a,
                                        int64_t rows_b, int64_t Kp, int64_t m0, int64_t n0, uint32_t base,
                                        float (&d)[wg_regs<BM>()]) {
  static_assert(BM == 64 || BM == 128, "wg_tile: BM is 64 or 128");
#pragma unroll
  for (int i = 0; i < wg_regs<BM>(); ++i) d[i] = 0.f;
#ifdef SPX_HAVE_WGMMA
  constexpr int SB = wg_stage_bytes<BM>();
  const int KT = int((Kp + WG_BK - 1) / WG_BK);
  const int g = threadIdx.x >> 7;  // warpgroup
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < KT) wg_load_stage<T, BM>(A, B, rows_a, rows_b, Kp, m0, n0, s, base + s * SB);
    cp_async_commit();  // empty groups keep the group count uniform
  }
  for (int kt = 0; kt < KT; ++kt) {
    cp_async_wait<STAGES - 2>();  // slice kt landed (this thread's copies) ...
    fence_proxy_async();          // ... visible to the tensor cores' (async) proxy ...
    __syncthreads();              // ... for every thread; and stage (kt-1) is no longer read
    const int next = kt + STAGES - 1;
    if (next < KT) wg_load_stage<T, BM>(A, B, rows_a, rows_b, Kp, m0, n0, next, base + (next % STAGES) * SB);
    cp_async_commit();
    const uint32_t st = base + (kt % STAGES) * SB;
    wg_fence();
    wg_pin(d);
    if constexpr (BM == 128) {
      const uint32_t sa = st + g * 64 * WG_ROW_BYTES, sb = st + BM * WG_ROW_BYTES;
#pragma unroll
      for (int ks = 0; ks < WG_BK / 16; ++ks) wgmma_n128<T>(d, wg_desc(sa + ks * 32), wg_desc(sb + ks * 32));
    } else {
      const uint32_t sa = st, sb = st + BM * WG_ROW_BYTES + g * 64 * WG_ROW_BYTES;
#pragma unroll
      for (int ks = 0; ks < WG_BK / 16; ++ks) wgmma_n64<T>(d, wg_desc(sa + ks * 32), wg_desc(sb + ks * 32));
    }
    wg_commit();
    wg_wait0();
    wg_pin(d);
  }
  cp_async_wait<0>();
  __syncthreads();
#endif
}

}  // namespace cuda
}  // namespace sparsify
