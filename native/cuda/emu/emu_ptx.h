// The inline PTX of mma_tile.cuh and wgmma_tile.cuh on the emulated device, implemented from the
// PTX ISA's descriptions (emu_ptx.cpp cites the sections). Shared-memory operands are 32-bit
// shared-window addresses, as __cvta_generic_to_shared gives them.
#pragma once
#include <cstdint>

namespace spx_emu {

enum class MmaType { BF16, F16 };

// cp.async.cg.shared.global [dst], [src], 16, src_size: copies src_size (0..16) bytes and
// zero-fills the rest of the 16. The copy lands when its group is waited for.
void cp_async16(uint32_t dst, const void* src, int src_size);
void cp_async_commit();
void cp_async_wait(int n);  // cp.async.wait_group n

// ldmatrix.sync.aligned.m8n8.x4.shared.b16 (warp collective).
void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr);

// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32 d, a, b, d (warp collective).
void mma_m16n8k16(MmaType t, float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);

// wgmma.mma_async.sync.aligned.m64nNk16.f32.{bf16,f16}.{bf16,f16} d, desc-a, desc-b, scale-d,
// imm-scale-a, imm-scale-b, imm-trans-a, imm-trans-b (warpgroup collective; N = 64 or 128).
void wgmma_m64k16(MmaType t, int n, float* d, uint64_t desc_a, uint64_t desc_b, int scale_d, int scale_a,
                  int scale_b, int trans_a, int trans_b);
void wgmma_fence();
void wgmma_commit();
void wgmma_wait(int n);
void fence_proxy_async();

}  // namespace spx_emu
