// The process-wide CUDA state: device probe, one stream, a lock that serialises GPU jobs
// (N-API async work may run on several libuv threads), device buffers, host<->device copies.
// Only .cu/.cpp files of native/cuda include this (SPARSIFY_HAVE_CUDA builds).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "cuda/cuda_check.h"
#include "core/tensor.h"

namespace sparsify {
namespace cuda {

struct ProbeResult {
  int devices = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;
  int driver_version = 0;   // e.g. 13000 (0 when no driver)
  int runtime_version = 0;  // the statically linked cudart, e.g. 13000
  int sm_count = 0;
  int64_t total_memory = 0;
  std::string error;        // "cudaErrorNoDevice: no CUDA-capable device is detected" etc.
};
// Never throws; safe on machines without a driver.
ProbeResult probe();

// Held for the duration of one GPU job (re-entrant on the same thread). Throws ERR_SPARSIFY_CUDA_UNAVAILABLE without a device and
// ERR_SPARSIFY_CUDA_STICKY after a sticky error.
class Session {
 public:
  Session();
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  cudaStream_t stream() const { return stream_; }
  const cudaDeviceProp& props() const;
  void sync();  // waits for the stream, turns asynchronous kernel errors into CudaError

 private:
  std::unique_lock<std::mutex> lock_;
  cudaStream_t stream_;
};

// Stream-ordered device allocation (cudaMallocAsync), freed on destruction (cudaFreeAsync).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(size_t bytes, cudaStream_t s);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return ptr_; }
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  cudaStream_t stream_ = nullptr;
};

// A tensor's bytes on the device: a copy of a host tensor (owned, in `buf`), or a read-only view
// of a device tensor (`view`, kept alive by `keep`).
struct DeviceTensor {
  DeviceBuffer buf;
  const void* view = nullptr;
  std::shared_ptr<Storage> keep;
  std::vector<int64_t> shape;
  DType dtype = DType::F32;
  // The host source, kept alive as long as this copy: cudaMemcpyAsync from pageable memory is
  // only documented to be "possibly synchronous", so a temporary source (t.to(F32)) must outlive
  // the copy; callers sync the stream before their DeviceTensors go.
  Tensor host;
  int64_t numel() const;
  const void* data() const { return view ? view : buf.get(); }
};
// Host tensor: copied; device tensor: viewed (never write through data()).
DeviceTensor upload(const Tensor& t, cudaStream_t s);
// Always a private, writable copy in `buf` (host -> device or device -> device).
DeviceTensor upload_owned(const Tensor& t, cudaStream_t s);

// Device tensors (Storage::device == CUDA; raw() is a device pointer): allocated on the stream
// (cudaMallocAsync), freed on it when the last reference goes. Contents uninitialised.
Tensor device_empty(const std::vector<int64_t>& shape, DType dtype, cudaStream_t s);
// Copies on the stream (the caller syncs before reading a host result or freeing a host source).
Tensor to_device(const Tensor& t, cudaStream_t s);  // t itself when already on the device
Tensor to_host(const Tensor& t, cudaStream_t s);    // t itself when already on the host
// Copies device bytes into a new host tensor (the caller syncs the stream before reading it).
Tensor download(const void* dev, const std::vector<int64_t>& shape, DType dtype, cudaStream_t s);

}  // namespace cuda
}  // namespace sparsify
