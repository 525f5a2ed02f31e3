// Process-wide CUDA state and the error helpers of cuda_check.h.
#include <atomic>
#include <cstring>

#include "cuda/cuda_context.h"

namespace sparsify {
namespace cuda {

namespace {
std::string dead_reason();
std::mutex g_mutex;                // serialises GPU jobs
std::atomic<bool> g_dead{false};   // set after a sticky error
std::mutex g_reason_mutex;
std::string g_dead_reason;         // guarded by g_reason_mutex
std::once_flag g_init_once;
cudaStream_t g_stream = nullptr;
cudaDeviceProp g_props;
cudaError_t g_init_error = cudaSuccess;
thread_local int t_session_depth = 0;  // Sessions held by this thread (nested ones do not re-lock)

std::string dead_reason() {
  std::lock_guard<std::mutex> g(g_reason_mutex);
  return g_dead_reason;
}

std::string err_text(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

void init_device() {
  int n = 0;
  g_init_error = cudaGetDeviceCount(&n);
  if (g_init_error == cudaSuccess && n == 0) g_init_error = cudaErrorNoDevice;
  if (g_init_error != cudaSuccess) {
    cudaGetLastError();  // clear the non-sticky error state
    return;
  }
  g_init_error = cudaSetDevice(0);
  if (g_init_error == cudaSuccess) g_init_error = cudaGetDeviceProperties(&g_props, 0);
  if (g_init_error == cudaSuccess) g_init_error = cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking);
  if (g_init_error == cudaSuccess) {
    // Keep freed blocks in the stream-ordered pool instead of returning them at every sync:
    // training allocates the same buffers every step.
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool(&pool, 0) == cudaSuccess) {
      uint64_t keep = UINT64_MAX;
      cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    }
    cudaGetLastError();
  }
}
}  // namespace

bool is_sticky(cudaError_t e) {
  switch (e) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorAssert:
    case cudaErrorECCUncorrectable:
    case cudaErrorLaunchTimeout:
    case cudaErrorContextIsDestroyed:
    case cudaErrorUnknown:
      return true;
    default:
      return false;
  }
}

void mark_dead(const std::string& why) {
  std::lock_guard<std::mutex> g(g_reason_mutex);
  if (!g_dead.load()) g_dead_reason = why;
  g_dead.store(true);
}

void throw_cuda(cudaError_t e, const char* expr, const char* file, int line) {
  const char* base = std::strrchr(file, '/');
  std::string where = std::string(base ? base + 1 : file) + ":" + std::to_string(line);
  std::string msg = "CUDA error " + err_text(e) + " in `" + expr + "` at " + where;
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // not sticky: clear it so later calls work
    throw CudaError("ERR_SPARSIFY_CUDA_OOM", msg + " (out of GPU memory: use smaller batches)");
  }
  if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver)
    throw CudaError("ERR_SPARSIFY_CUDA_UNAVAILABLE", msg);
  if (is_sticky(e)) {
    mark_dead(msg);
    throw CudaError("ERR_SPARSIFY_CUDA_STICKY",
                    msg + " (the CUDA context is now unusable; restart the process)");
  }
  cudaGetLastError();
  throw CudaError("ERR_SPARSIFY_DEVICE", msg);
}

ProbeResult probe() {
  ProbeResult r;
  cudaRuntimeGetVersion(&r.runtime_version);
  cudaError_t e = cudaDriverGetVersion(&r.driver_version);
  if (e != cudaSuccess) r.driver_version = 0;
  int n = 0;
  e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    r.devices = 0;
    r.error = err_text(e);
    cudaGetLastError();
    return r;
  }
  r.devices = n;
  if (n == 0) {
    r.error = err_text(cudaErrorNoDevice);
    return r;
  }
  cudaDeviceProp p;
  e = cudaGetDeviceProperties(&p, 0);
  if (e != cudaSuccess) {
    r.error = err_text(e);
    cudaGetLastError();
    return r;
  }
  r.name = p.name;
  r.cc_major = p.major;
  r.cc_minor = p.minor;
  r.sm_count = p.multiProcessorCount;
  r.total_memory = int64_t(p.totalGlobalMem);
  if (g_dead.load()) r.error = "backend disabled after a sticky error: " + dead_reason();
  return r;
}

Session::Session() : lock_(g_mutex, std::defer_lock) {
  // Re-entrant on one thread (a host_copy inside a job): only the outermost Session locks.
  if (t_session_depth == 0) lock_.lock();
  ++t_session_depth;
  struct Undo {
    bool armed = true;
    ~Undo() {
      if (armed) --t_session_depth;
    }
  } undo;
  if (g_dead.load())
    throw CudaError("ERR_SPARSIFY_CUDA_STICKY",
                    "the CUDA backend was disabled by an earlier error (" + dead_reason() + "); restart the process");
  std::call_once(g_init_once, init_device);
  if (g_init_error != cudaSuccess) {
    std::string msg = "no usable CUDA device: " + err_text(g_init_error);
    throw CudaError("ERR_SPARSIFY_CUDA_UNAVAILABLE", msg);
  }
  CUDA_CHECK(cudaSetDevice(0));  // this libuv thread may not have selected it yet
  stream_ = g_stream;
  undo.armed = false;
}

Session::~Session() { --t_session_depth; }

const cudaDeviceProp& Session::props() const { return g_props; }

void Session::sync() { CUDA_CHECK(cudaStreamSynchronize(stream_)); }

DeviceBuffer::DeviceBuffer(size_t bytes, cudaStream_t s) : bytes_(bytes), stream_(s) {
  if (bytes) CUDA_CHECK(cudaMallocAsync(&ptr_, bytes, s));
}

DeviceBuffer::~DeviceBuffer() {
  // Errors here cannot be reported (destructor); a sticky error surfaces at the next sync.
  if (ptr_) cudaFreeAsync(ptr_, stream_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_), stream_(o.stream_) {
  o.ptr_ = nullptr;
  o.bytes_ = 0;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFreeAsync(ptr_, stream_);
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    stream_ = o.stream_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

int64_t DeviceTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

DeviceTensor upload(const Tensor& t, cudaStream_t s) {
  if (t.device() == Device::CUDA) {
    DeviceTensor d;  // already on the device: a read-only view, no copy
    d.shape = t.shape;
    d.dtype = t.dtype;
    d.view = t.raw();
    d.keep = t.storage;
    return d;
  }
  return upload_owned(t, s);
}

DeviceTensor upload_owned(const Tensor& t, cudaStream_t s) {
  DeviceTensor d;
  d.shape = t.shape;
  d.dtype = t.dtype;
  d.buf = DeviceBuffer(t.nbytes(), s);
  d.host = t;  // keeps the source alive until the copy has run (the caller syncs later)
  if (t.nbytes()) CUDA_CHECK(cudaMemcpyAsync(d.buf.get(), t.raw(), t.nbytes(), cudaMemcpyDefault, s));
  return d;
}

Tensor device_empty(const std::vector<int64_t>& shape, DType dtype, cudaStream_t s) {
  int64_t n = 1;
  for (int64_t v : shape) {
    if (v < 0) fail(ErrorKind::Shape, "device_empty: negative dimension in " + shape_str(shape));
    n *= v;
  }
  auto st = std::make_shared<Storage>();
  st->bytes = size_t(n) * dtype_size(dtype);
  st->device = Device::CUDA;
  if (st->bytes) CUDA_CHECK(cudaMallocAsync(&st->data, st->bytes, s));
  // Freed on the backend's stream, so that work queued before the last reference went finishes
  // first. A failure here (e.g. at process exit) cannot be reported and is ignored.
  st->release = [](void* p, size_t) {
    if (p) {
      cudaFreeAsync(p, g_stream);
      cudaGetLastError();
    }
  };
  Tensor t;
  t.storage = std::move(st);
  t.shape = shape;
  t.dtype = dtype;
  return t;
}

Tensor to_device(const Tensor& t, cudaStream_t s) {
  if (t.device() == Device::CUDA) return t;
  Tensor d = device_empty(t.shape, t.dtype, s);
  if (t.nbytes()) CUDA_CHECK(cudaMemcpyAsync(d.raw(), t.raw(), t.nbytes(), cudaMemcpyHostToDevice, s));
  return d;
}

Tensor to_host(const Tensor& t, cudaStream_t s) {
  if (t.device() != Device::CUDA) return t;
  return download(t.raw(), t.shape, t.dtype, s);
}

namespace {
// The hooks of tensor.h: synchronous copies, each in its own (possibly nested) Session.
Tensor hook_to_host(const Tensor& t) {
  Session ses;
  Tensor h = to_host(t, ses.stream());
  ses.sync();
  return h;
}
Tensor hook_to_device(const Tensor& t) {
  Session ses;
  Tensor d = to_device(t, ses.stream());
  ses.sync();  // the host source may be freed as soon as we return
  return d;
}
Tensor hook_clone_device(const Tensor& t) {
  Session ses;
  Tensor d = device_empty(t.shape, t.dtype, ses.stream());
  if (t.nbytes()) CUDA_CHECK(cudaMemcpyAsync(d.raw(), t.raw(), t.nbytes(), cudaMemcpyDeviceToDevice, ses.stream()));
  ses.sync();
  return d;
}
struct InstallHooks {
  InstallHooks() {
    device_hooks().to_host = hook_to_host;
    device_hooks().to_device = hook_to_device;
    device_hooks().clone_device = hook_clone_device;
  }
} g_install_hooks;
}  // namespace

Tensor download(const void* dev, const std::vector<int64_t>& shape, DType dtype, cudaStream_t s) {
  Tensor t = Tensor::empty(shape, dtype);
  if (t.nbytes()) CUDA_CHECK(cudaMemcpyAsync(t.raw(), dev, t.nbytes(), cudaMemcpyDefault, s));
  return t;
}

}  // namespace cuda
}  // namespace sparsify
