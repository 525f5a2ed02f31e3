// The process-wide CUDA state: device probe, one stream, a lock that serialises GPU jobs
// (N-API async work may run on several libuv threads), device buffers, host<->device copies.
// Only .cu/.cpp files of native/cuda include this (SPARSIFY_HAVE_CUDA builds).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <string>

#include "cuda_check.h"
#include "tensor.h"

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

// Held for the duration of one GPU job. Throws ERR_SPARSIFY_CUDA_UNAVAILABLE without a device and
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

// A host tensor copied to the device (same dtype, same bytes).
struct DeviceTensor {
  DeviceBuffer buf;
  std::vector<int64_t> shape;
  DType dtype = DType::F32;
  // The host source, kept alive as long as this copy: cudaMemcpyAsync from pageable memory is
  // only documented to be "possibly synchronous", so a temporary source (t.to(F32)) must outlive
  // the copy; callers sync the stream before their DeviceTensors go (review fix).
  Tensor host;
  int64_t numel() const;
  const void* data() const { return buf.get(); }
};
DeviceTensor upload(const Tensor& t, cudaStream_t s);
// Copies device bytes into a new host tensor (the caller syncs the stream before reading it).
Tensor download(const void* dev, const std::vector<int64_t>& shape, DType dtype, cudaStream_t s);

}  // namespace cuda
}  // namespace sparsify
