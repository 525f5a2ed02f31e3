// The execution model and runtime of the emulated device, checked against the CUDA programming
// guide's rules (indices, barriers, warp collectives, shared memory, launch limits, sticky
// errors) — written from the documented behaviour, not from the project's kernels.
#include <cmath>
#include <cub/device/device_radix_sort.cuh>

#include "harness.h"

namespace {

__global__ void index_kernel(unsigned* out) {
  unsigned b = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  unsigned t = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  unsigned nt = blockDim.x * blockDim.y * blockDim.z;
  out[b * nt + t] = (b << 16) | t;
}

TEST_CASE("indices: every (block, thread) runs once with its coordinates", [] {
  dim3 grid(3, 2, 2), block(8, 4, 2);
  unsigned n = 12 * 64;
  unsigned* d = dev_alloc<unsigned>(n);
  SPX_LAUNCH(grid, block, 0, nullptr, index_kernel)(d);
  EXPECT_CUDA(cudaGetLastError());
  auto h = to_host(d, n);
  for (unsigned i = 0; i < n; ++i) EXPECT_EQ(h[i], ((i / 64) << 16) | (i % 64));
});

__global__ void block_reverse_kernel(const int* in, int* out) {
  __shared__ int tile[256];
  int t = threadIdx.x;
  tile[t] = in[blockIdx.x * 256 + t];
  __syncthreads();
  out[blockIdx.x * 256 + t] = tile[255 - t];
}

TEST_CASE("__syncthreads: writes before the barrier are seen after it by every thread", [] {
  std::vector<int> h(4 * 256);
  for (size_t i = 0; i < h.size(); ++i) h[i] = int(i * 7 + 1);
  int* in = to_device(h);
  int* out = dev_alloc<int>(h.size());
  SPX_LAUNCH(4, 256, 0, nullptr, block_reverse_kernel)(in, out);
  EXPECT_CUDA(cudaGetLastError());
  auto r = to_host(out, h.size());
  for (int b = 0; b < 4; ++b)
    for (int t = 0; t < 256; ++t) EXPECT_EQ(r[size_t(b * 256 + t)], h[size_t(b * 256 + 255 - t)]);
});

__global__ void read_unwritten_shared_kernel(unsigned* out) {
  SPX_DYNAMIC_SHARED(unsigned, dyn, 16);
  __shared__ unsigned stat[4];
  if (threadIdx.x == 0) {
    out[0] = dyn[0];
    out[1] = dyn[255];
    out[2] = stat[3];
    dyn[0] = 7;  // must not survive into the next block
    stat[3] = 7;
  }
}

TEST_CASE("shared memory starts NaN-filled in every block (static and dynamic)", [] {
  unsigned* d = dev_alloc<unsigned>(6);
  SPX_LAUNCH(1, 32, 1024, nullptr, read_unwritten_shared_kernel)(d);
  SPX_LAUNCH(1, 32, 1024, nullptr, read_unwritten_shared_kernel)(d + 3);
  EXPECT_CUDA(cudaGetLastError());
  auto h = to_host(d, 6);
  for (unsigned v : h) EXPECT_EQ(v, 0xffffffffu);
  float f;
  std::memcpy(&f, &h[0], 4);
  EXPECT(std::isnan(f));
});

TEST_CASE("device memory starts NaN-filled", [] {
  float* d = dev_alloc<float>(10);
  auto h = to_host(d, 10);
  for (float v : h) EXPECT(std::isnan(v));
});

__global__ void warp_ops_kernel(int* out) {
  int lane = threadIdx.x & 31;
  int v = lane * 3 + 1;
  int sum = v;
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  out[threadIdx.x * 6 + 0] = sum;
  out[threadIdx.x * 6 + 1] = __shfl_sync(0xffffffffu, v, 5);
  out[threadIdx.x * 6 + 2] = __shfl_down_sync(0xffffffffu, v, 3);
  out[threadIdx.x * 6 + 3] = __shfl_up_sync(0xffffffffu, v, 2);
  out[threadIdx.x * 6 + 4] = int(__ballot_sync(0xffffffffu, lane % 3 == 0));
  out[threadIdx.x * 6 + 5] = __shfl_xor_sync(0xffffffffu, v, 1, 8);
  double dv = __shfl_xor_sync(0xffffffffu, double(lane) + 0.5, 31);
  if (dv != double(31 - lane) + 0.5) out[threadIdx.x * 6] = -1;
}

TEST_CASE("warp collectives: shfl idx/xor/down/up (with width), ballot, 64-bit shfl", [] {
  int* d = dev_alloc<int>(64 * 6);
  SPX_LAUNCH(1, 64, 0, nullptr, warp_ops_kernel)(d);
  EXPECT_CUDA(cudaGetLastError());
  auto h = to_host(d, 64 * 6);
  unsigned ballot = 0;
  for (int l = 0; l < 32; ++l)
    if (l % 3 == 0) ballot |= 1u << l;
  for (int t = 0; t < 64; ++t) {
    int l = t & 31;
    auto v = [](int lane) { return lane * 3 + 1; };
    EXPECT_EQ(h[size_t(t * 6 + 0)], 3 * 496 + 32);
    EXPECT_EQ(h[size_t(t * 6 + 1)], v(5));
    EXPECT_EQ(h[size_t(t * 6 + 2)], l + 3 < 32 ? v(l + 3) : v(l));  // out of range: own value
    EXPECT_EQ(h[size_t(t * 6 + 3)], l >= 2 ? v(l - 2) : v(l));
    EXPECT_EQ(unsigned(h[size_t(t * 6 + 4)]), ballot);
    EXPECT_EQ(h[size_t(t * 6 + 5)], v(l ^ 1));
  }
});

__global__ void partial_mask_kernel(int* out) {
  int lane = threadIdx.x & 31;
  if (lane < 16) out[lane] = __shfl_xor_sync(0x0000ffffu, lane, 1);
  else out[lane] = __shfl_xor_sync(0xffff0000u, lane * 10, 2);
  __syncwarp();
}

TEST_CASE("collectives of two disjoint masks in one warp complete separately", [] {
  int* d = dev_alloc<int>(32);
  SPX_LAUNCH(1, 32, 0, nullptr, partial_mask_kernel)(d);
  EXPECT_CUDA(cudaGetLastError());
  auto h = to_host(d, 32);
  for (int l = 0; l < 16; ++l) EXPECT_EQ(h[size_t(l)], l ^ 1);
  for (int l = 16; l < 32; ++l) EXPECT_EQ(h[size_t(l)], (l ^ 2) * 10);
});

__global__ void atomic_kernel(int* counter, float* fsum, unsigned* mx) {
  atomicAdd(counter, 1);
  atomicAdd(fsum, 0.5f);
  atomicMax(mx, blockIdx.x * blockDim.x + threadIdx.x);
}

TEST_CASE("atomics from every thread of many blocks", [] {
  int* c = to_device(std::vector<int>{0});
  float* f = to_device(std::vector<float>{0.f});
  unsigned* m = to_device(std::vector<unsigned>{0});
  SPX_LAUNCH(7, 96, 0, nullptr, atomic_kernel)(c, f, m);
  EXPECT_CUDA(cudaGetLastError());
  EXPECT_EQ(to_host(c, 1)[0], 7 * 96);
  EXPECT_EQ(to_host(f, 1)[0], 7 * 96 * 0.5f);
  EXPECT_EQ(to_host(m, 1)[0], 7u * 96 - 1);
});

// ---- undefined behaviour is a reported, sticky error that names the kernel ----

__global__ void early_exit_barrier_kernel(int* out) {
  if (threadIdx.x == 3) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

std::string last_error_text() { return cudaGetErrorString(cudaGetLastError()); }

TEST_CASE("a __syncthreads() some threads never reach is an error naming the kernel", [] {
  int* d = dev_alloc<int>(64);
  SPX_LAUNCH(2, 64, 0, nullptr, early_exit_barrier_kernel)(d);
  cudaError_t e = cudaGetLastError();
  EXPECT_EQ(int(e), int(cudaErrorLaunchFailure));
  std::string s = cudaGetErrorString(e);
  EXPECT_CONTAINS(s, "early_exit_barrier_kernel");
  EXPECT_CONTAINS(s, "__syncthreads() not reached");
  EXPECT_CONTAINS(s, "thread (3,0,0) had exited");
  // sticky: every later call fails with it
  void* p = nullptr;
  EXPECT_EQ(int(cudaMalloc(&p, 16)), int(cudaErrorLaunchFailure));
  EXPECT_EQ(int(cudaGetLastError()), int(cudaErrorLaunchFailure));
});

__global__ void missing_lane_kernel(float* out) {
  if (threadIdx.x == 5) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.f, 1);
}

TEST_CASE("a full-mask shuffle with an exited lane is an error naming the lane", [] {
  float* d = dev_alloc<float>(32);
  SPX_LAUNCH(1, 32, 0, nullptr, missing_lane_kernel)(d);
  std::string s = last_error_text();
  EXPECT_CONTAINS(s, "missing_lane_kernel");
  EXPECT_CONTAINS(s, "__shfl_xor_sync with mask 0xffffffff in warp 0");
  EXPECT_CONTAINS(s, "lane 5 had exited");
});

__global__ void partial_warp_kernel(float* out) { out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.f, 1); }

TEST_CASE("a full-mask collective in a partial warp (48-thread block) is an error", [] {
  float* d = dev_alloc<float>(48);
  SPX_LAUNCH(1, 48, 0, nullptr, partial_warp_kernel)(d);
  std::string s = last_error_text();
  EXPECT_CONTAINS(s, "warp 1");
  EXPECT_CONTAINS(s, "does not exist");
});

__global__ void mask_mismatch_kernel(int* out) {
  unsigned m = threadIdx.x == 0 ? 0x0000ffffu : 0xffffffffu;
  out[threadIdx.x] = __shfl_sync(m, 1, 0);
}

TEST_CASE("lanes passing different masks to one collective is an error", [] {
  int* d = dev_alloc<int>(32);
  SPX_LAUNCH(1, 32, 0, nullptr, mask_mismatch_kernel)(d);
  EXPECT_CONTAINS(last_error_text(), "mask");
});

__global__ void self_excluded_kernel(int* out) { out[threadIdx.x] = int(__ballot_sync(0xfffffffeu, true)); }

TEST_CASE("a lane calling a collective with a mask that leaves itself out is an error", [] {
  int* d = dev_alloc<int>(32);
  SPX_LAUNCH(1, 32, 0, nullptr, self_excluded_kernel)(d);
  EXPECT_CONTAINS(last_error_text(), "leaves itself out");
});

__global__ void shfl_reads_outside_mask_kernel(int* out) {
  if (threadIdx.x < 16) out[threadIdx.x] = __shfl_sync(0x0000ffffu, 1, 20);
}

TEST_CASE("a shuffle reading a lane outside the mask is an error", [] {
  int* d = dev_alloc<int>(32);
  SPX_LAUNCH(1, 32, 0, nullptr, shfl_reads_outside_mask_kernel)(d);
  EXPECT_CONTAINS(last_error_text(), "not in the mask");
});

__global__ void write_past_end_kernel(float* p, int n) { p[n + int(threadIdx.x)] = 1.f; }

TEST_CASE("a write just past an allocation (inside its 256-byte granule) is found after the kernel", [] {
  float* d = dev_alloc<float>(10);
  SPX_LAUNCH(1, 1, 0, nullptr, write_past_end_kernel)(d, 10);
  cudaError_t e = cudaGetLastError();
  EXPECT_EQ(int(e), int(cudaErrorIllegalAddress));
  std::string s = cudaGetErrorString(e);
  EXPECT_CONTAINS(s, "write_past_end_kernel");
  EXPECT_CONTAINS(s, "past the end of a 40-byte allocation");
});

__global__ void read_far_kernel(const float* p, int off, float* out) { out[0] = p[off]; }

TEST_CASE("a read beyond an allocation's guard faults at once and names kernel, block and thread", [] {
  float* d = dev_alloc<float>(64);
  float* out = dev_alloc<float>(1);
  SPX_LAUNCH(1, 1, 0, nullptr, read_far_kernel)(d, 64 + 200, out);
  std::string s = last_error_text();
  EXPECT_CONTAINS(s, "read_far_kernel");
  EXPECT_CONTAINS(s, "block (0,0,0) thread (0,0,0)");
  EXPECT_CONTAINS(s, "illegal address");
  EXPECT_CONTAINS(s, "past the end of a 256-byte allocation");
  float h = 0;
  EXPECT_EQ(int(cudaMemcpy(&h, out, 4, cudaMemcpyDeviceToHost)), int(cudaErrorIllegalAddress));
});

TEST_CASE("a write before an allocation's start is found", [] {
  float* d = dev_alloc<float>(64);
  SPX_LAUNCH(1, 1, 0, nullptr, write_past_end_kernel)(d, -3);
  EXPECT_CONTAINS(last_error_text(), "before the start of a 256-byte allocation");
});

__global__ void empty_kernel(int*) {}

TEST_CASE("launch limits: the hardware's error codes, not sticky", [] {
  SPX_LAUNCH(1, 1025, 0, nullptr, empty_kernel)(nullptr);
  EXPECT_EQ(int(cudaGetLastError()), int(cudaErrorInvalidConfiguration));
  EXPECT_CUDA(cudaGetLastError());  // read once, then cleared
  SPX_LAUNCH(dim3(1, 65536), 32, 0, nullptr, empty_kernel)(nullptr);
  EXPECT_EQ(int(cudaGetLastError()), int(cudaErrorInvalidConfiguration));
  SPX_LAUNCH(dim3(1, 1, 65536), 32, 0, nullptr, empty_kernel)(nullptr);
  EXPECT_EQ(int(cudaGetLastError()), int(cudaErrorInvalidConfiguration));
  SPX_LAUNCH(dim3(1, 1, 1), dim3(1, 1, 65), 0, nullptr, empty_kernel)(nullptr);
  EXPECT_EQ(int(cudaGetLastError()), int(cudaErrorInvalidConfiguration));
  SPX_LAUNCH(0, 32, 0, nullptr, empty_kernel)(nullptr);
  EXPECT_EQ(int(cudaGetLastError()), int(cudaErrorInvalidConfiguration));
  SPX_LAUNCH(dim3(0x7fffffffu), 1, 0, nullptr, empty_kernel);  // the largest grid.x is accepted (not run here)
  SPX_LAUNCH(1, 1024, 48 * 1024, nullptr, empty_kernel)(nullptr);
  EXPECT_CUDA(cudaGetLastError());
  SPX_LAUNCH(1, 32, 48 * 1024 + 1, nullptr, empty_kernel)(nullptr);  // above 48 KB needs the opt-in
  EXPECT_EQ(int(cudaGetLastError()), int(cudaErrorInvalidValue));
  EXPECT_CUDA(cudaFuncSetAttribute(empty_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 232448));
  SPX_LAUNCH(1, 32, 232448, nullptr, empty_kernel)(nullptr);
  EXPECT_CUDA(cudaGetLastError());
  EXPECT_EQ(int(cudaFuncSetAttribute(empty_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 232449)),
            int(cudaErrorInvalidValue));
  cudaGetLastError();
  // nothing sticky happened
  void* p = nullptr;
  EXPECT_CUDA(cudaMalloc(&p, 4));
});

void check_props(int major, size_t optin, int sms) {
  cudaDeviceProp p;
  EXPECT_CUDA(cudaGetDeviceProperties(&p, 0));
  EXPECT_EQ(p.major, major);
  EXPECT_EQ(p.minor, 0);
  EXPECT_EQ(p.sharedMemPerBlockOptin, optin);
  EXPECT_EQ(p.multiProcessorCount, sms);
  int v = 0;
  EXPECT_CUDA(cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, 0));
  EXPECT_EQ(v, major);
  EXPECT_CUDA(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
  EXPECT_EQ(size_t(v), optin);
}

TEST_CASE("device model sm_90 (default): H100-class properties", [] { check_props(9, 232448, 132); });
TEST_CASE("device model sm_80: A100-class properties and its shared-memory opt-in limit", [] {
  check_props(8, 166912, 108);
  EXPECT_EQ(int(cudaFuncSetAttribute(empty_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 166913)),
            int(cudaErrorInvalidValue));
}, "SPARSIFY_CUDA_EMU_ARCH=sm_80");

TEST_CASE("copies and sets check device ranges; async variants, streams, events", [] {
  float* d = dev_alloc<float>(8);
  std::vector<float> h(16, 2.f);
  EXPECT_EQ(int(cudaMemcpy(d, h.data(), 16 * 4, cudaMemcpyHostToDevice)), int(cudaErrorInvalidValue));
  EXPECT_EQ(int(cudaMemset(d + 4, 0, 8 * 4)), int(cudaErrorInvalidValue));
  EXPECT_EQ(int(cudaMemcpy(h.data(), h.data() + 8, 4, cudaMemcpyDeviceToHost)), int(cudaErrorInvalidValue));
  cudaGetLastError();
  cudaStream_t s;
  EXPECT_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaEvent_t a, b;
  EXPECT_CUDA(cudaEventCreate(&a));
  EXPECT_CUDA(cudaEventCreate(&b));
  EXPECT_CUDA(cudaEventRecord(a, s));
  EXPECT_CUDA(cudaMemcpyAsync(d, h.data(), 8 * 4, cudaMemcpyDefault, s));
  EXPECT_CUDA(cudaMemsetAsync(d, 0, 4, s));
  EXPECT_CUDA(cudaEventRecord(b, s));
  EXPECT_CUDA(cudaStreamSynchronize(s));
  float ms = -1;
  EXPECT_CUDA(cudaEventElapsedTime(&ms, a, b));
  EXPECT(ms >= 0);
  auto r = to_host(d, 8);
  EXPECT_EQ(r[0], 0.f);
  EXPECT_EQ(r[7], 2.f);
  EXPECT_EQ(int(cudaFree(h.data())), int(cudaErrorInvalidValue));  // not a device allocation
  void* p = nullptr;
  EXPECT_CUDA(cudaMallocAsync(&p, 100, s));
  EXPECT_CUDA(cudaFreeAsync(p, s));
  EXPECT_CUDA(cudaStreamDestroy(s));
});

TEST_CASE("cub::DeviceRadixSort::SortPairs: stable by the key bits [begin, end)", [] {
  std::vector<int> keys = {5, 3, 5, 1, 3, 0, 5, 2, 1, 4, 3, 5, 0, 7, 6, 2};
  std::vector<int> vals(keys.size());
  for (size_t i = 0; i < vals.size(); ++i) vals[i] = int(i);
  int *kd = to_device(keys), *vd = to_device(vals), *ko = dev_alloc<int>(keys.size()), *vo = dev_alloc<int>(keys.size());
  size_t temp = 0;
  EXPECT_CUDA(cub::DeviceRadixSort::SortPairs(nullptr, temp, kd, ko, vd, vo, int(keys.size()), 0, 3));
  EXPECT(temp > 0);
  void* t = nullptr;
  EXPECT_CUDA(cudaMalloc(&t, temp));
  EXPECT_CUDA(cub::DeviceRadixSort::SortPairs(t, temp, kd, ko, vd, vo, int(keys.size()), 0, 3));
  auto k = to_host(ko, keys.size()), v = to_host(vo, keys.size());
  for (size_t i = 1; i < k.size(); ++i) {
    EXPECT(k[i - 1] <= k[i]);
    if (k[i - 1] == k[i]) EXPECT(v[i - 1] < v[i]);  // stable
  }
  for (size_t i = 0; i < k.size(); ++i) EXPECT_EQ(keys[size_t(v[i])], k[i]);
  // only bits [1, 3) count: 2 and 3 are equal keys, kept in input order
  EXPECT_CUDA(cub::DeviceRadixSort::SortPairs(t, temp, kd, ko, vd, vo, int(keys.size()), 1, 3));
  k = to_host(ko, keys.size()), v = to_host(vo, keys.size());
  for (size_t i = 1; i < k.size(); ++i) {
    EXPECT(((k[i - 1] >> 1) & 3) <= ((k[i] >> 1) & 3));
    if (((k[i - 1] >> 1) & 3) == ((k[i] >> 1) & 3)) EXPECT(v[i - 1] < v[i]);
  }
  // negative keys order before positive ones (cub's signed-key twiddle)
  std::vector<int> sk = {3, -1, 0, -7, 2};
  int* skd = to_device(sk);
  EXPECT_CUDA(cub::DeviceRadixSort::SortPairs(t, temp, skd, ko, vd, vo, 5));
  k = to_host(ko, 5);
  EXPECT(k == (std::vector<int>{-7, -1, 0, 2, 3}));
});

}  // namespace
