// The PTX instructions of mma_tile.cuh and wgmma_tile.cuh, from the PTX ISA (9.x):
//  - cp.async / cp.async.commit_group / cp.async.wait_group ("Data Movement and Conversion
//    Instructions: cp.async"): a copy is performed when its group is waited for (or when the
//    thread exits), so a read of the destination before the wait sees the NaN fill.
//  - ldmatrix.sync.aligned.m8n8.x4.shared.b16 ("Warp-level matrix load instruction: ldmatrix"):
//    lanes 8i..8i+7 give the row addresses of matrix i; lane l receives, in register i, the two
//    elements at row l/4, columns 2(l%4) and 2(l%4)+1 of matrix i (lower column in the low half).
//  - mma.sync.aligned.m16n8k16.row.col ("Matrix Fragments for mma.m16n8k16 with floating point
//    type"): groupID = lane/4, t = lane%4; A (16x16, .row): a0,a1 (g, 2t+{0,1}), a2,a3 (g+8, 2t+{0,1}),
//    a4,a5 (g, 2t+8+{0,1}), a6,a7 (g+8, 2t+8+{0,1}), two per 32-bit register in that order; B (16x8,
//    .col): b0,b1 (k = 2t+{0,1}, n = g), b2,b3 (k = 2t+8+{0,1}, n = g); C/D (f32): c0,c1 (g, 2t+{0,1}),
//    c2,c3 (g+8, 2t+{0,1}).
//  - wgmma.mma_async ("Asynchronous Warpgroup Level Matrix Multiply-Accumulate"): the shared-memory
//    matrix descriptor (bits 0-13 start address >> 4, 16-29 leading-dimension byte offset >> 4,
//    32-45 stride-dimension byte offset >> 4, 49-51 base offset, 62-63 swizzle: 0 none, 1 128 B,
//    2 64 B, 3 32 B); K-major canonical layouts: without swizzle ((8,m),(T,2k)):((1T,SBO),(1,LBO)),
//    with a W-byte swizzle ((8,m),(T,2k)):((W/16·T,SBO),(1,T)) in units of 16 bytes (T = 8 halves),
//    the swizzle XORing address bits [4, 4+log2(W/16)) with bits [7, ...) of the shared address;
//    the m64nNk16 D fragment: thread t of the warpgroup, warp w = t/32, lane l: d[i] is at row
//    16w + l/4 + 8·((i/2)%2), column 8·(i/4) + 2·(l%4) + i%2.
// Products of 16-bit inputs are exact in f32; the emulator sums them in double and rounds once,
// one valid f32-accumulation result (the hardware's order and intermediate rounding are not
// specified and not modelled).
#include <cstdio>

#include "emu_internal.h"
#include "emu_ptx.h"

namespace spx_emu {

namespace {

float half_to_f32(MmaType t, uint16_t h) { return t == MmaType::BF16 ? bf16_bits_to_f32(h) : f16_bits_to_f32(h); }
float lo(MmaType t, uint32_t r) { return half_to_f32(t, uint16_t(r & 0xffffu)); }
float hi(MmaType t, uint32_t r) { return half_to_f32(t, uint16_t(r >> 16)); }

const ThreadCtx* by_lane(const Collective& c, int lane) {
  for (const ThreadCtx* m : c.members)
    if (m->lane == lane) return m;
  return nullptr;
}

void complete_ldmatrix(Collective& c) {
  for (ThreadCtx* m : c.members) {
    auto* r = static_cast<uint32_t*>(m->coll_out);
    int l = m->lane;
    for (int i = 0; i < 4; ++i) {
      uint32_t addr = *static_cast<const uint32_t*>(by_lane(c, 8 * i + l / 4)->coll_in);
      if (addr % 16) {
        g_thread = m;
        kernel_fault(cudaErrorMisalignedAddress, "ldmatrix: row address 0x%x (lane %d) is not 16-byte aligned", addr, 8 * i + l / 4);
      }
      const auto* row = static_cast<const uint16_t*>(shared_ptr(addr, 16));
      r[i] = uint32_t(row[2 * (l % 4)]) | (uint32_t(row[2 * (l % 4) + 1]) << 16);
    }
  }
}

struct MmaIn {
  MmaType type;
  const uint32_t* a;
  uint32_t b0, b1;
};

void complete_mma(Collective& c) {
  float A[16][16], B[16][8];
  double D[16][8];
  MmaType t = static_cast<const MmaIn*>(c.members.front()->coll_in)->type;
  for (const ThreadCtx* m : c.members) {
    auto* in = static_cast<const MmaIn*>(m->coll_in);
    if (in->type != t) kernel_fault(cudaErrorLaunchFailure, "mma.sync: lanes disagree on the input type");
    int g = m->lane / 4, q = m->lane % 4;
    const uint32_t* a = in->a;
    A[g][2 * q] = lo(t, a[0]), A[g][2 * q + 1] = hi(t, a[0]);
    A[g + 8][2 * q] = lo(t, a[1]), A[g + 8][2 * q + 1] = hi(t, a[1]);
    A[g][2 * q + 8] = lo(t, a[2]), A[g][2 * q + 9] = hi(t, a[2]);
    A[g + 8][2 * q + 8] = lo(t, a[3]), A[g + 8][2 * q + 9] = hi(t, a[3]);
    B[2 * q][g] = lo(t, in->b0), B[2 * q + 1][g] = hi(t, in->b0);
    B[2 * q + 8][g] = lo(t, in->b1), B[2 * q + 9][g] = hi(t, in->b1);
    const float* d = static_cast<const float*>(m->coll_out);
    D[g][2 * q] = d[0], D[g][2 * q + 1] = d[1], D[g + 8][2 * q] = d[2], D[g + 8][2 * q + 1] = d[3];
  }
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j) {
      double s = 0;
      for (int k = 0; k < 16; ++k) s += double(A[i][k]) * double(B[k][j]);
      D[i][j] = double(float(D[i][j] + s));
    }
  for (ThreadCtx* m : c.members) {
    int g = m->lane / 4, q = m->lane % 4;
    float* d = static_cast<float*>(m->coll_out);
    d[0] = float(D[g][2 * q]), d[1] = float(D[g][2 * q + 1]), d[2] = float(D[g + 8][2 * q]), d[3] = float(D[g + 8][2 * q + 1]);
  }
}

struct WgIn {
  MmaType type;
  int n;
  uint64_t da, db;
  int scale_d, scale_a, scale_b, trans_a, trans_b;
  bool operator==(const WgIn& o) const {
    return type == o.type && n == o.n && da == o.da && db == o.db && scale_d == o.scale_d && scale_a == o.scale_a &&
           scale_b == o.scale_b && trans_a == o.trans_a && trans_b == o.trans_b;
  }
};

}  // namespace

// Shared address of element (row, k) of a K-major 16-bit operand described by `desc`.
uint32_t wgmma_element_address(uint64_t desc, int row, int k) {
  uint32_t start = uint32_t(desc & 0x3fff) << 4, lbo = uint32_t((desc >> 16) & 0x3fff) << 4,
           sbo = uint32_t((desc >> 32) & 0x3fff) << 4;
  int mode = int(desc >> 62);
  if (mode == 0) return start + uint32_t(row / 8) * sbo + uint32_t(row % 8) * 16 + uint32_t(k / 8) * lbo + uint32_t(k % 8) * 2;
  uint32_t width = mode == 1 ? 128 : mode == 2 ? 64 : 32;  // bytes per swizzled row
  uint32_t a = start + uint32_t(row / 8) * sbo + uint32_t(row % 8) * width + uint32_t(k) * 2;
  uint32_t bits = mode == 1 ? 7 : mode == 2 ? 3 : 1;  // the XOR mask of the 16-byte chunk index
  return a ^ (((a >> 7) & bits) << 4);
}

namespace {

void complete_wgmma(Collective& c) {
  const WgIn& p = *static_cast<const WgIn*>(c.members.front()->coll_in);
  for (const ThreadCtx* m : c.members)
    if (!(*static_cast<const WgIn*>(m->coll_in) == p)) {
      g_thread = const_cast<ThreadCtx*>(m);
      kernel_fault(cudaErrorLaunchFailure, "wgmma.mma_async: threads of warpgroup %d pass different operands", c.scope_id);
    }
  if (p.trans_a || p.trans_b) kernel_fault(cudaErrorIllegalInstruction, "wgmma.mma_async: transposed (MN-major) operands are not emulated");
  for (uint64_t d : {p.da, p.db})
    if ((d >> 49) & 7) kernel_fault(cudaErrorIllegalInstruction, "wgmma.mma_async: a descriptor base offset != 0 is not emulated");
  std::vector<float> A(64 * 16), B(size_t(p.n) * 16);
  for (int r = 0; r < 64; ++r)
    for (int k = 0; k < 16; ++k)
      A[size_t(r * 16 + k)] = half_to_f32(p.type, *static_cast<const uint16_t*>(shared_ptr(wgmma_element_address(p.da, r, k), 2)));
  for (int r = 0; r < p.n; ++r)
    for (int k = 0; k < 16; ++k)
      B[size_t(r * 16 + k)] = half_to_f32(p.type, *static_cast<const uint16_t*>(shared_ptr(wgmma_element_address(p.db, r, k), 2)));
  const double sab = double(p.scale_a) * double(p.scale_b);
  for (ThreadCtx* m : c.members) {
    int t = m->linear % 128, w = t / 32, l = t % 32;
    float* d = static_cast<float*>(m->coll_out);
    for (int i = 0; i < p.n / 2; ++i) {
      int row = 16 * w + l / 4 + 8 * ((i / 2) % 2), col = 8 * (i / 4) + 2 * (l % 4) + i % 2;
      double s = 0;
      for (int k = 0; k < 16; ++k) s += double(A[size_t(row * 16 + k)]) * double(B[size_t(col * 16 + k)]);
      d[i] = float((p.scale_d ? double(d[i]) : 0.0) + sab * s);
    }
  }
}

}  // namespace

void cp_async16(uint32_t dst, const void* src, int src_size) {
  if (src_size < 0 || src_size > 16) kernel_fault(cudaErrorIllegalInstruction, "cp.async: src-size %d is outside [0, 16]", src_size);
  if (dst % 16) kernel_fault(cudaErrorMisalignedAddress, "cp.async: shared destination 0x%x is not 16-byte aligned", dst);
  if (src_size > 0 && reinterpret_cast<uintptr_t>(src) % 16)
    kernel_fault(cudaErrorMisalignedAddress, "cp.async: global source %p is not 16-byte aligned", src);
  shared_ptr(dst, 16);  // checked now: the address is the instruction's operand
  g_thread->open_copies.push_back(PendingCopy{dst, src, src_size});
}

void cp_async_commit() {
  ThreadCtx* t = g_thread;
  t->copy_groups.push_back(std::move(t->open_copies));
  t->open_copies.clear();
}

void cp_async_wait(int n) {
  ThreadCtx* t = g_thread;
  while (int(t->copy_groups.size()) > n) {
    land_copies(t->copy_groups.front());
    t->copy_groups.erase(t->copy_groups.begin());
  }
}

void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  collective("ldmatrix.sync.aligned.m8n8.x4", &complete_ldmatrix, 0, 0xffffffffu, &addr, r);
}

void mma_m16n8k16(MmaType t, float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  MmaIn in{t, a, b0, b1};
  collective("mma.sync.aligned.m16n8k16", &complete_mma, 0, 0xffffffffu, &in, d);
}

void wgmma_m64k16(MmaType t, int n, float* d, uint64_t desc_a, uint64_t desc_b, int scale_d, int scale_a, int scale_b,
                  int trans_a, int trans_b) {
  if (g_launch.block.x * g_launch.block.y * g_launch.block.z % 128)
    kernel_fault(cudaErrorLaunchFailure, "wgmma.mma_async in a block of %u threads (not whole warpgroups)",
                 g_launch.block.x * g_launch.block.y * g_launch.block.z);
  if (n != 64 && n != 128 && !(n >= 8 && n <= 256 && n % 8 == 0))
    kernel_fault(cudaErrorIllegalInstruction, "wgmma.mma_async: N = %d", n);
  WgIn in{t, n, desc_a, desc_b, scale_d, scale_a, scale_b, trans_a, trans_b};
  collective("wgmma.mma_async.sync.aligned.m64nNk16", &complete_wgmma, 1, 0xffffffffu, &in, d);
}

void wgmma_fence() {}
void wgmma_commit() { ++g_thread->wgmma_pending; }
void wgmma_wait(int n) {
  if (g_thread->wgmma_pending > n) g_thread->wgmma_pending = n;
}
void fence_proxy_async() {}

}  // namespace spx_emu
