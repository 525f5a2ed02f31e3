// The emulated PTX instructions against the PTX ISA's own layout descriptions (fragment tables
// of ldmatrix and mma.m16n8k16, the wgmma shared-memory matrix descriptor, its canonical K-major
// layouts and 128-byte swizzle, the m64nNk16 accumulator fragment; cp.async group semantics).
// Every placement below is written from the ISA text quoted with it, not from the kernels.
#include <cmath>
#include <random>

#include "harness.h"

namespace {

using spx_emu::MmaType;

// ---- ldmatrix.sync.aligned.m8n8.x4.shared.b16 ----
// ISA: "each thread in a group of 8 threads (0-7, 8-15, 16-23, 24-31) provides the address of one
// row of matrix 0..3"; "each thread receives two elements of a row: thread l holds row l/4,
// elements 2*(l%4) and 2*(l%4)+1" of each matrix, in the register of that matrix.
uint16_t ld_value(int m, int r, int c) { return uint16_t(m * 64 + r * 8 + c + 1); }
uint32_t ld_row_offset(int m, int r) { return uint32_t(((m * 8 + r) * 7) % 32) * 16; }  // rows scattered

__global__ void ldmatrix_kernel(uint32_t* out) {
  SPX_DYNAMIC_SHARED(uint16_t, sm, 16);
  int l = threadIdx.x;
  for (int m = 0; m < 4; ++m) {
    int r = l / 4, c0 = (l % 4) * 2;  // 32 threads write 4 x 8 rows x 8 values
    if (l < 32) {
      uint16_t* row = sm + ld_row_offset(m, r) / 2;
      row[c0] = ld_value(m, r, c0);
      row[c0 + 1] = ld_value(m, r, c0 + 1);
    }
  }
  __syncthreads();
  uint32_t base = uint32_t(__cvta_generic_to_shared(sm));
  uint32_t reg[4];
  spx_emu::ldmatrix_x4(reg, base + ld_row_offset(l / 8, l % 8));
  for (int i = 0; i < 4; ++i) out[l * 4 + i] = reg[i];
}

TEST_CASE("ldmatrix.x4: lanes 8i..8i+7 address matrix i; lane l gets row l/4, columns 2(l%4), 2(l%4)+1", [] {
  uint32_t* d = dev_alloc<uint32_t>(128);
  SPX_LAUNCH(1, 32, 512, nullptr, ldmatrix_kernel)(d);
  EXPECT_CUDA(cudaGetLastError());
  auto h = to_host(d, 128);
  for (int l = 0; l < 32; ++l)
    for (int m = 0; m < 4; ++m) {
      uint32_t want = uint32_t(ld_value(m, l / 4, 2 * (l % 4))) | (uint32_t(ld_value(m, l / 4, 2 * (l % 4) + 1)) << 16);
      EXPECT_EQ(h[size_t(l * 4 + m)], want);
    }
});

__global__ void ldmatrix_misaligned_kernel(uint32_t* out) {
  SPX_DYNAMIC_SHARED(uint16_t, sm, 16);
  uint32_t reg[4];
  spx_emu::ldmatrix_x4(reg, uint32_t(__cvta_generic_to_shared(sm)) + (threadIdx.x == 9 ? 8 : 16 * threadIdx.x));
  out[threadIdx.x] = reg[0];
}

TEST_CASE("ldmatrix: a row address that is not 16-byte aligned is a misaligned-address error", [] {
  uint32_t* d = dev_alloc<uint32_t>(32);
  SPX_LAUNCH(1, 32, 1024, nullptr, ldmatrix_misaligned_kernel)(d);
  EXPECT_EQ(int(cudaGetLastError()), int(cudaErrorMisalignedAddress));
});

// ---- mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16} ----
// ISA fragment tables (groupID = lane >> 2, threadID_in_group = lane % 4):
//   A: row = groupID for a0,a1,a4,a5, groupID + 8 for a2,a3,a6,a7;
//      col = threadID_in_group*2 + (i & 1) for a0..a3, + 8 for a4..a7; two 16-bit per register.
//   B: row (k) = threadID_in_group*2 + (i & 1) for b0,b1, + 8 for b2,b3; col (n) = groupID.
//   C/D: row = groupID for c0,c1, groupID + 8 for c2,c3; col = threadID_in_group*2 + (i & 1).
uint16_t to16(MmaType t, float v) { return t == MmaType::BF16 ? __nv_bfloat16(v).x : __half(v).x; }

struct MmaArgs {
  const float *A, *B, *C;  // A [16][16], B [16 (k)][8 (n)], C [16][8]
  float* D;
  MmaType t;
};

__global__ void mma_kernel(MmaArgs p) {
  int lane = threadIdx.x, g = lane >> 2, q = lane % 4;
  auto a_at = [&](int i) {
    int row = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8;
    int col = q * 2 + (i & 1) + (i >= 4 ? 8 : 0);
    return to16(p.t, p.A[row * 16 + col]);
  };
  auto b_at = [&](int i) {
    int row = q * 2 + (i & 1) + (i >= 2 ? 8 : 0);
    return to16(p.t, p.B[row * 8 + g]);
  };
  uint32_t a[4];
  for (int r = 0; r < 4; ++r) a[r] = uint32_t(a_at(2 * r)) | (uint32_t(a_at(2 * r + 1)) << 16);
  uint32_t b0 = uint32_t(b_at(0)) | (uint32_t(b_at(1)) << 16), b1 = uint32_t(b_at(2)) | (uint32_t(b_at(3)) << 16);
  float d[4];
  for (int i = 0; i < 4; ++i) d[i] = p.C[(i < 2 ? g : g + 8) * 8 + q * 2 + (i & 1)];
  spx_emu::mma_m16n8k16(p.t, d, a, b0, b1);
  for (int i = 0; i < 4; ++i) p.D[(i < 2 ? g : g + 8) * 8 + q * 2 + (i & 1)] = d[i];
}

void check_mma(MmaType t) {
  std::mt19937 rng(t == MmaType::BF16 ? 1 : 2);
  std::uniform_int_distribution<int> u(-16, 16);
  std::vector<float> A(256), B(128), C(128);
  for (float& v : A) v = float(u(rng)) / 8;  // exact in bf16 and f16
  for (float& v : B) v = float(u(rng)) / 4;
  for (float& v : C) v = float(u(rng));
  MmaArgs p{to_device(A), to_device(B), to_device(C), dev_alloc<float>(128), t};
  SPX_LAUNCH(1, 32, 0, nullptr, mma_kernel)(p);
  EXPECT_CUDA(cudaGetLastError());
  auto D = to_host(p.D, 128);
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j) {
      double s = C[size_t(i * 8 + j)];
      for (int k = 0; k < 16; ++k) s += double(A[size_t(i * 16 + k)]) * double(B[size_t(k * 8 + j)]);
      EXPECT_EQ(D[size_t(i * 8 + j)], float(s));  // small exact operands: exact result
    }
}

TEST_CASE("mma.m16n8k16 bf16: D = A*B + C with the ISA's A/B/C/D fragment tables", [] { check_mma(MmaType::BF16); });
TEST_CASE("mma.m16n8k16 f16: D = A*B + C with the ISA's A/B/C/D fragment tables", [] { check_mma(MmaType::F16); });

__global__ void mma_partial_warp_kernel(float* out) {
  if (threadIdx.x >= 16) return;
  uint32_t a[4] = {0, 0, 0, 0};
  float d[4] = {0, 0, 0, 0};
  spx_emu::mma_m16n8k16(MmaType::BF16, d, a, 0, 0);
  out[threadIdx.x] = d[0];
}

TEST_CASE("mma.sync with half a warp is an error (.aligned: every lane must execute it)", [] {
  float* d = dev_alloc<float>(32);
  SPX_LAUNCH(1, 32, 0, nullptr, mma_partial_warp_kernel)(d);
  std::string s = cudaGetErrorString(cudaGetLastError());
  EXPECT_CONTAINS(s, "mma.sync.aligned.m16n8k16");
  EXPECT_CONTAINS(s, "lane 16 had exited");
});

// ---- cp.async.cg.shared.global [dst], [src], 16, src-size + commit_group / wait_group ----
// ISA: src-size bytes are copied and the rest of the 16 is zero-filled; commit_group makes the
// thread's prior uncommitted cp.async a group; wait_group N waits until at most N of the most
// recent groups are pending (all older ones complete); uncommitted copies are not waited for.
__global__ void cp_async_kernel(const unsigned char* src, unsigned char* out) {
  SPX_DYNAMIC_SHARED(unsigned char, sm, 16);
  uint32_t s = uint32_t(__cvta_generic_to_shared(sm));
  auto snap = [&](int slot) {
    for (int i = 0; i < 64; ++i) out[slot * 64 + i] = sm[i];
  };
  if (threadIdx.x == 0) {
    spx_emu::cp_async16(s + 0, src + 0, 16);
    spx_emu::cp_async_commit();
    spx_emu::cp_async16(s + 16, src + 16, 8);
    spx_emu::cp_async_commit();
    spx_emu::cp_async16(s + 32, src + 32, 0);
    spx_emu::cp_async_commit();
    spx_emu::cp_async16(s + 48, src + 48, 16);  // never committed
    spx_emu::cp_async_wait(2);
    snap(0);
    spx_emu::cp_async_wait(1);
    snap(1);
    spx_emu::cp_async_wait(0);
    snap(2);
  }
}

TEST_CASE("cp.async: zero fill past src-size; wait_group N completes all but the N newest groups", [] {
  std::vector<unsigned char> src(64);
  for (int i = 0; i < 64; ++i) src[size_t(i)] = (unsigned char)(i + 1);
  unsigned char* d = to_device(src);
  unsigned char* out = dev_alloc<unsigned char>(3 * 64);
  SPX_LAUNCH(1, 32, 64, nullptr, cp_async_kernel)(d, out);
  EXPECT_CUDA(cudaGetLastError());
  auto h = to_host(out, 3 * 64);
  auto at = [&](int slot, int i) { return int(h[size_t(slot * 64 + i)]); };
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(at(0, i), i + 1);   // group 0 complete
    EXPECT_EQ(at(0, 16 + i), 0xff);  // groups 1 and 2 pending: shared memory still the fill
    EXPECT_EQ(at(0, 32 + i), 0xff);
    EXPECT_EQ(at(1, 16 + i), i < 8 ? 17 + i : 0);  // 8 bytes copied, 8 zero-filled
    EXPECT_EQ(at(1, 32 + i), 0xff);
    EXPECT_EQ(at(2, 32 + i), 0);     // src-size 0: all zeros, nothing read
    EXPECT_EQ(at(2, 48 + i), 0xff);  // uncommitted: not waited for
  }
});

__global__ void cp_async_bad_kernel(const unsigned char* src, int mode) {
  SPX_DYNAMIC_SHARED(unsigned char, sm, 16);
  uint32_t s = uint32_t(__cvta_generic_to_shared(sm));
  if (mode == 0) spx_emu::cp_async16(s + 8, src, 16);
  if (mode == 1) spx_emu::cp_async16(s + 64, src, 16);  // past the 64 bytes of dynamic shared memory
  if (mode == 2) spx_emu::cp_async16(s, src + 4, 16);
}

TEST_CASE("cp.async: misaligned destination/source and out-of-range shared destination are errors", [] {
  unsigned char* d = dev_alloc<unsigned char>(64);
  SPX_LAUNCH(1, 1, 64, nullptr, cp_async_bad_kernel)(d, 0);
  EXPECT_EQ(int(cudaGetLastError()), int(cudaErrorMisalignedAddress));
});
TEST_CASE("cp.async: a shared destination past the block's shared memory is an illegal address", [] {
  unsigned char* d = dev_alloc<unsigned char>(64);
  SPX_LAUNCH(1, 1, 64, nullptr, cp_async_bad_kernel)(d, 1);
  std::string s = cudaGetErrorString(cudaGetLastError());
  EXPECT_CONTAINS(s, "outside the block's shared memory");
});
TEST_CASE("cp.async: a misaligned global source is an error", [] {
  unsigned char* d = dev_alloc<unsigned char>(64);
  SPX_LAUNCH(1, 1, 64, nullptr, cp_async_bad_kernel)(d, 2);
  EXPECT_EQ(int(cudaGetLastError()), int(cudaErrorMisalignedAddress));
});

// ---- wgmma.mma_async.sync.aligned.m64nNk16.f32.bf16.bf16 ----
// Descriptor (ISA "Matrix Descriptor Format"): bits 0-13 matrix start address >> 4, 16-29 leading
// dimension byte offset >> 4, 32-45 stride dimension byte offset >> 4, 49-51 base offset, 62-63
// swizzle mode (0 none, 1 128B, 2 64B, 3 32B).
uint64_t make_desc(uint32_t start, uint32_t lbo, uint32_t sbo, int mode) {
  return uint64_t((start >> 4) & 0x3fff) | (uint64_t((lbo >> 4) & 0x3fff) << 16) | (uint64_t((sbo >> 4) & 0x3fff) << 32) |
         (uint64_t(mode) << 62);
}
// K-major, 128B swizzle (ISA canonical layout ((8,m),(T,2k)):((8T,SBO),(1,T)), T = 8 halves; the
// 128B swizzle pattern: within each 8-row x 128-byte atom, 16-byte chunk j of row r is stored at
// chunk j XOR (r mod 8)). Rows of 64 halves (128 bytes), atoms of 8 rows at SBO = 1024 bytes.
uint32_t sw128_offset(int r, int k) { return uint32_t((r / 8) * 1024 + (r % 8) * 128 + (((k / 8) ^ (r % 8)) * 16) + (k % 8) * 2); }
// K-major, no swizzle (ISA ((8,m),(T,2k)):((1T,SBO),(1,LBO))): 8x8 core matrices of 8 rows x
// 16 contiguous bytes; the next core matrix along K at LBO, along M/N at SBO.
constexpr uint32_t NS_LBO = 128, NS_SBO = 256;
uint32_t nosw_offset(int r, int k) { return uint32_t((r / 8) * NS_SBO + (k / 8) * NS_LBO + (r % 8) * 16 + (k % 8) * 2); }

struct WgArgs {
  const float *A, *B;  // A [64][KA], B [N][KA] (both K contiguous), KA = 64 (sw128) or 16 (none)
  float* D;            // [64][N]
  int n, mode, ks, scale_d;
};

// The m64nNk16 D fragment (ISA figure "WGMMA .m64nNk16 register fragment layout for accumulator
// matrix D"): warp w of the warpgroup owns rows 16w..16w+15; lane l, register i: row
// 16w + l/4 + 8*((i/2)%2), column 8*(i/4) + 2*(l%4) + (i%2).
int frag_row(int t, int i) { return 16 * (t / 32) + (t % 32) / 4 + 8 * ((i / 2) % 2); }
int frag_col(int t, int i) { return 8 * (i / 4) + 2 * (t % 4) + i % 2; }

__global__ void wgmma_kernel(WgArgs p) {
  SPX_DYNAMIC_SHARED(char, raw, 16);
  uint32_t base = (uint32_t(__cvta_generic_to_shared(raw)) + 1023u) & ~1023u;
  char* tile = raw + (base - uint32_t(__cvta_generic_to_shared(raw)));
  const int KA = p.mode == 1 ? 64 : 16;
  const uint32_t b_off = p.mode == 1 ? 8 * 1024 : 8 * NS_SBO + 4096;  // B after A's 64 rows
  int t = threadIdx.x;
  for (int e = t; e < 64 * KA; e += 128) {
    int r = e / KA, k = e % KA;
    uint32_t off = p.mode == 1 ? sw128_offset(r, k) : nosw_offset(r, k);
    *reinterpret_cast<__nv_bfloat16*>(tile + off) = __nv_bfloat16(p.A[e]);
  }
  for (int e = t; e < p.n * KA; e += 128) {
    int r = e / KA, k = e % KA;
    uint32_t off = p.mode == 1 ? sw128_offset(r, k) : nosw_offset(r, k);
    *reinterpret_cast<__nv_bfloat16*>(tile + b_off + off) = __nv_bfloat16(p.B[e]);
  }
  __syncthreads();
  float d[64];
  for (int i = 0; i < p.n / 2; ++i) d[i] = float(frag_row(t, i) * 1000 + frag_col(t, i));
  uint64_t da, db;
  if (p.mode == 1) {  // the K step ks of 16 starts 32 bytes further into the 128-byte rows
    da = make_desc(base + uint32_t(p.ks) * 32, 16, 1024, 1);
    db = make_desc(base + b_off + uint32_t(p.ks) * 32, 16, 1024, 1);
  } else {
    da = make_desc(base, NS_LBO, NS_SBO, 0);
    db = make_desc(base + b_off, NS_LBO, NS_SBO, 0);
  }
  spx_emu::wgmma_fence();
  spx_emu::wgmma_m64k16(MmaType::BF16, p.n, d, da, db, p.scale_d, 1, 1, 0, 0);
  spx_emu::wgmma_commit();
  spx_emu::wgmma_wait(0);
  for (int i = 0; i < p.n / 2; ++i) p.D[frag_row(t, i) * p.n + frag_col(t, i)] = d[i];
}

void check_wgmma(int n, int mode, int ks, int scale_d) {
  const int KA = mode == 1 ? 64 : 16;
  std::mt19937 rng(unsigned(n * 31 + mode * 7 + ks));
  std::uniform_int_distribution<int> u(-8, 8);
  std::vector<float> A(size_t(64 * KA)), B(size_t(n * KA));
  for (float& v : A) v = float(u(rng)) / 4;
  for (float& v : B) v = float(u(rng)) / 2;
  WgArgs p{to_device(A), to_device(B), dev_alloc<float>(size_t(64 * n)), n, mode, ks, scale_d};
  EXPECT_CUDA(cudaFuncSetAttribute(wgmma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024));
  SPX_LAUNCH(1, 128, 40 * 1024, nullptr, wgmma_kernel)(p);
  EXPECT_CUDA(cudaGetLastError());
  auto D = to_host(p.D, size_t(64 * n));
  for (int r = 0; r < 64; ++r)
    for (int c = 0; c < n; ++c) {
      double s = scale_d ? double(r * 1000 + c) : 0.0;
      for (int k = 0; k < 16; ++k) s += double(A[size_t(r * KA + ks * 16 + k)]) * double(B[size_t(c * KA + ks * 16 + k)]);
      EXPECT_EQ(D[size_t(r * n + c)], float(s));
    }
}

TEST_CASE("wgmma m64n128k16, 128B swizzle, K step 0: D += A*B^T in the ISA's D fragment", [] { check_wgmma(128, 1, 0, 1); });
TEST_CASE("wgmma m64n128k16, 128B swizzle, K step 3 (start address +96 B)", [] { check_wgmma(128, 1, 3, 1); });
TEST_CASE("wgmma m64n64k16, 128B swizzle, K steps 1 and 2, scale-d 0 overwrites", [] {
  check_wgmma(64, 1, 1, 0);
  check_wgmma(64, 1, 2, 1);
});
TEST_CASE("wgmma m64n64k16 without swizzle: core matrices at LBO (K) and SBO (M/N)", [] { check_wgmma(64, 0, 0, 1); });

__global__ void wgmma_half_group_kernel(float* out) {
  SPX_DYNAMIC_SHARED(char, raw, 16);
  float d[32] = {};
  if (threadIdx.x < 64) {
    uint64_t desc = make_desc(uint32_t(__cvta_generic_to_shared(raw)), 16, 1024, 1);
    spx_emu::wgmma_m64k16(MmaType::BF16, 64, d, desc, desc, 1, 1, 1, 0, 0);
  }
  out[threadIdx.x] = d[0];
}

TEST_CASE("wgmma reached by half a warpgroup is an error naming the warpgroup", [] {
  float* d = dev_alloc<float>(128);
  SPX_LAUNCH(1, 128, 32 * 1024, nullptr, wgmma_half_group_kernel)(d);
  std::string s = cudaGetErrorString(cudaGetLastError());
  EXPECT_CONTAINS(s, "wgmma_half_group_kernel");
  EXPECT_CONTAINS(s, "warpgroup 0");
  EXPECT_CONTAINS(s, "thread 64 had exited");
});

__global__ void wgmma_desc_mismatch_kernel(float* out) {
  SPX_DYNAMIC_SHARED(char, raw, 16);
  float d[32] = {};
  uint32_t s = uint32_t(__cvta_generic_to_shared(raw));
  uint64_t desc = make_desc(s + (threadIdx.x == 77 ? 1024 : 0), 16, 1024, 1);
  spx_emu::wgmma_m64k16(MmaType::BF16, 64, d, desc, desc, 1, 1, 1, 0, 0);
  out[threadIdx.x] = d[0];
}

TEST_CASE("wgmma with threads passing different descriptors is an error", [] {
  float* d = dev_alloc<float>(128);
  SPX_LAUNCH(1, 128, 32 * 1024, nullptr, wgmma_desc_mismatch_kernel)(d);
  EXPECT_CONTAINS(std::string(cudaGetErrorString(cudaGetLastError())), "different operands");
});

}  // namespace
