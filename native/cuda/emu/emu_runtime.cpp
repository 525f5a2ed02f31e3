// The CUDA runtime API of the emulated device. One device; its model (sm_90 H100-class or sm_80
// A100-class) comes from SPARSIFY_CUDA_EMU_ARCH=sm_90|sm_80 (default sm_90). Work runs when it
// is enqueued, under one device lock; device pointers handed to copies, sets and frees must lie
// in live allocations (else cudaErrorInvalidValue, as the hardware would fault or refuse).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "emu_internal.h"

namespace spx_emu {
void* device_alloc(size_t bytes);
bool device_free(void* p);
bool is_device_pointer(const void* p);
cudaError_t set_func_max_dynamic_smem(const void* fn, int bytes);

namespace {
cudaError_t g_sticky = cudaSuccess;
std::string g_sticky_msg;
thread_local cudaError_t g_last = cudaSuccess;
struct EventRec {
  std::chrono::steady_clock::time_point t;
};
}  // namespace

const DeviceModel& device_model() {
  static const DeviceModel m = [] {
    const char* a = std::getenv("SPARSIFY_CUDA_EMU_ARCH");
    if (a && std::strcmp(a, "sm_80") == 0) return DeviceModel{"sm_80", 8, 0, 108, 166912};
    return DeviceModel{"sm_90", 9, 0, 132, 232448};
  }();
  return m;
}

void set_sticky(cudaError_t e, const std::string& msg) {
  if (g_sticky != cudaSuccess) return;
  g_sticky = e;
  g_sticky_msg = msg;
}
cudaError_t sticky_error() { return g_sticky; }
void set_last_error(cudaError_t e) { g_last = e; }

}  // namespace spx_emu

using namespace spx_emu;

namespace {
// Every call returns the sticky error once a kernel has faulted, as on hardware.
cudaError_t ret(cudaError_t e) {
  if (g_sticky != cudaSuccess) return g_sticky;
  if (e != cudaSuccess) g_last = e;
  return e;
}

bool device_range(const void* p, size_t n) { return n == 0 || in_allocation(p, n); }

cudaError_t copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  std::lock_guard<std::mutex> lock(device_mutex());
  if (g_sticky != cudaSuccess) return g_sticky;
  if (bytes == 0) return cudaSuccess;
  bool dst_dev = is_device_pointer(dst), src_dev = is_device_pointer(src);
  switch (kind) {
    case cudaMemcpyHostToDevice: if (!device_range(dst, bytes) || src_dev) return ret(cudaErrorInvalidValue); break;
    case cudaMemcpyDeviceToHost: if (!device_range(src, bytes) || dst_dev) return ret(cudaErrorInvalidValue); break;
    case cudaMemcpyDeviceToDevice:
      if (!device_range(src, bytes) || !device_range(dst, bytes)) return ret(cudaErrorInvalidValue);
      break;
    case cudaMemcpyHostToHost: break;
    case cudaMemcpyDefault:
      if ((dst_dev && !device_range(dst, bytes)) || (src_dev && !device_range(src, bytes))) return ret(cudaErrorInvalidValue);
      break;
    default: return ret(cudaErrorInvalidMemcpyDirection);
  }
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}
}  // namespace

// SPARSIFY_CUDA_EMU_DEVICES=0: a machine whose driver sees no GPU, as the nvcc build reports it
// there (cudaErrorNoDevice), so the CUDA build's no-device paths run without an nvcc build.
static bool no_device() {
  static const bool none = [] {
    const char* d = std::getenv("SPARSIFY_CUDA_EMU_DEVICES");
    return d && std::strcmp(d, "0") == 0;
  }();
  return none;
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = no_device() ? 0 : 1;
  return no_device() ? ret(cudaErrorNoDevice) : cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (no_device()) return ret(cudaErrorNoDevice);
  return ret(device == 0 ? cudaSuccess : cudaErrorInvalidDevice);
}
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return ret(cudaSuccess);
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (device != 0) return ret(cudaErrorInvalidDevice);
  const DeviceModel& m = device_model();
  std::memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "sparsify emulated device (%s, %s-class)", m.arch, m.major == 9 ? "H100" : "A100");
  p->totalGlobalMem = size_t(80) << 30;
  p->sharedMemPerBlock = 48 * 1024;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = 1024, p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 0x7fffffff, p->maxGridSize[1] = 65535, p->maxGridSize[2] = 65535;
  p->major = m.major;
  p->minor = m.minor;
  p->multiProcessorCount = m.sms;
  p->maxThreadsPerMultiProcessor = 2048;
  p->sharedMemPerBlockOptin = m.smem_optin;
  p->sharedMemPerMultiprocessor = m.smem_optin + 1024;
  p->l2CacheSize = m.major == 9 ? 50 << 20 : 40 << 20;
  return ret(cudaSuccess);
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr attr, int device) {
  if (device != 0) return ret(cudaErrorInvalidDevice);
  const DeviceModel& m = device_model();
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *v = 1024; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = 48 * 1024; break;
    case cudaDevAttrWarpSize: *v = 32; break;
    case cudaDevAttrMultiProcessorCount: *v = m.sms; break;
    case cudaDevAttrComputeCapabilityMajor: *v = m.major; break;
    case cudaDevAttrComputeCapabilityMinor: *v = m.minor; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = int(m.smem_optin); break;
    default: return ret(cudaErrorInvalidValue);
  }
  return ret(cudaSuccess);
}
cudaError_t cudaDriverGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return ret(cudaSuccess); }
cudaError_t cudaDeviceReset() { return ret(cudaSuccess); }
cudaError_t cudaMemGetInfo(size_t* f, size_t* t) {
  *f = size_t(79) << 30;
  *t = size_t(80) << 30;
  return ret(cudaSuccess);
}

cudaError_t cudaGetLastError() {
  if (g_sticky != cudaSuccess) return g_sticky;
  cudaError_t e = g_last;
  g_last = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return g_sticky != cudaSuccess ? g_sticky : g_last; }

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
#define SPX_EMU_NAME(x) \
  case x: return #x;
    SPX_EMU_NAME(cudaSuccess) SPX_EMU_NAME(cudaErrorInvalidValue) SPX_EMU_NAME(cudaErrorMemoryAllocation)
    SPX_EMU_NAME(cudaErrorInitializationError) SPX_EMU_NAME(cudaErrorInsufficientDriver) SPX_EMU_NAME(cudaErrorNoDevice)
    SPX_EMU_NAME(cudaErrorInvalidDevice) SPX_EMU_NAME(cudaErrorInvalidConfiguration) SPX_EMU_NAME(cudaErrorInvalidDevicePointer)
    SPX_EMU_NAME(cudaErrorInvalidMemcpyDirection) SPX_EMU_NAME(cudaErrorInvalidResourceHandle) SPX_EMU_NAME(cudaErrorNotReady)
    SPX_EMU_NAME(cudaErrorIllegalAddress) SPX_EMU_NAME(cudaErrorLaunchOutOfResources) SPX_EMU_NAME(cudaErrorLaunchTimeout)
    SPX_EMU_NAME(cudaErrorHardwareStackError) SPX_EMU_NAME(cudaErrorIllegalInstruction) SPX_EMU_NAME(cudaErrorMisalignedAddress)
    SPX_EMU_NAME(cudaErrorInvalidAddressSpace) SPX_EMU_NAME(cudaErrorInvalidPc) SPX_EMU_NAME(cudaErrorLaunchFailure)
    SPX_EMU_NAME(cudaErrorAssert) SPX_EMU_NAME(cudaErrorECCUncorrectable) SPX_EMU_NAME(cudaErrorContextIsDestroyed)
    SPX_EMU_NAME(cudaErrorUnknown)
#undef SPX_EMU_NAME
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t e) {
  // The sticky error's string carries the emulator's diagnosis (kernel, block, thread, what).
  if (e == g_sticky && e != cudaSuccess) return g_sticky_msg.c_str();
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorMisalignedAddress: return "misaligned address";
    case cudaErrorInvalidAddressSpace: return "operation not supported on global/shared address space";
    default: return cudaGetErrorName(e);
  }
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
  std::lock_guard<std::mutex> lock(device_mutex());
  if (g_sticky != cudaSuccess) return g_sticky;
  *p = nullptr;
  if (bytes == 0) return cudaSuccess;
  if (bytes > (size_t(80) << 30)) return ret(cudaErrorMemoryAllocation);
  *p = device_alloc(bytes);
  return ret(*p ? cudaSuccess : cudaErrorMemoryAllocation);
}
cudaError_t cudaFree(void* p) {
  std::lock_guard<std::mutex> lock(device_mutex());
  if (g_sticky != cudaSuccess) return g_sticky;
  if (!p) return cudaSuccess;
  return ret(device_free(p) ? cudaSuccess : cudaErrorInvalidValue);
}
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t) { return cudaMalloc(p, bytes); }
cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return cudaFree(p); }
cudaError_t cudaMallocHost(void** p, size_t bytes) {
  *p = std::malloc(bytes ? bytes : 1);
  return ret(*p ? cudaSuccess : cudaErrorMemoryAllocation);
}
cudaError_t cudaFreeHost(void* p) {
  std::free(p);
  return ret(cudaSuccess);
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) { return copy(dst, src, bytes, kind); }
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
  return copy(dst, src, bytes, kind);
}
cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  std::lock_guard<std::mutex> lock(device_mutex());
  if (g_sticky != cudaSuccess) return g_sticky;
  if (!device_range(p, bytes)) return ret(cudaErrorInvalidValue);
  if (bytes) std::memset(p, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t) { return cudaMemset(p, value, bytes); }

cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  *s = reinterpret_cast<cudaStream_t>(new char(0));
  return ret(cudaSuccess);
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete reinterpret_cast<char*>(s);
  return ret(cudaSuccess);
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return ret(cudaSuccess); }
cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, 0); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  *e = reinterpret_cast<cudaEvent_t>(new EventRec{});
  return ret(cudaSuccess);
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete reinterpret_cast<EventRec*>(e);
  return ret(cudaSuccess);
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  if (!e) return ret(cudaErrorInvalidResourceHandle);
  reinterpret_cast<EventRec*>(e)->t = std::chrono::steady_clock::now();
  return ret(cudaSuccess);
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) { return ret(e ? cudaSuccess : cudaErrorInvalidResourceHandle); }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  if (!a || !b) return ret(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(reinterpret_cast<EventRec*>(b)->t - reinterpret_cast<EventRec*>(a)->t).count();
  return ret(cudaSuccess);
}

cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device) {
  static char the_pool;
  if (device != 0) return ret(cudaErrorInvalidDevice);
  *pool = reinterpret_cast<cudaMemPool_t>(&the_pool);
  return ret(cudaSuccess);
}
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, cudaMemPoolAttr, void*) { return ret(cudaSuccess); }
cudaError_t cudaMemPoolTrimTo(cudaMemPool_t, size_t) { return ret(cudaSuccess); }

cudaError_t spx_emu_func_set_attribute(const void* fn, cudaFuncAttribute attr, int value) {
  if (g_sticky != cudaSuccess) return g_sticky;
  if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return ret(cudaErrorInvalidValue);
  return ret(set_func_max_dynamic_smem(fn, value));
}

namespace spx_emu {
bool device_range_ok(const void* p, size_t bytes) {
  std::lock_guard<std::mutex> lock(device_mutex());
  return bytes == 0 || in_allocation(p, bytes);
}
}  // namespace spx_emu
