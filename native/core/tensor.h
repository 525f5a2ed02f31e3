// A contiguous, row-major tensor over a shared Storage (heap memory, a memory-mapped file, or
// later device memory). Copies are cheap (shared_ptr); async workers hold copies so that a JS
// dispose() or GC during a pending operation never frees memory under them.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/errors.h"

namespace sparsify {

enum class Device { CPU = 0, CUDA = 1 };

struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device = Device::CPU;
  bool owned_heap = false;  // counted against V8's external memory
  std::function<void(void*, size_t)> release;
  Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage() {
    if (release) release(data, bytes);
  }
  // 64-byte aligned heap block; contents uninitialised.
  static std::shared_ptr<Storage> allocate(size_t bytes);
  // Read-only private mapping of a whole file.
  static std::shared_ptr<Storage> map_file(const std::string& path);
};

struct Tensor {
  std::shared_ptr<Storage> storage;
  size_t offset = 0;  // bytes into storage
  std::vector<int64_t> shape;
  DType dtype = DType::F32;

  int64_t numel() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
  int64_t dim(int i) const { return shape.at(size_t(i < 0 ? int(shape.size()) + i : i)); }
  int ndim() const { return int(shape.size()); }
  bool defined() const { return storage != nullptr; }
  Device device() const { return storage ? storage->device : Device::CPU; }
  void* raw() const { return static_cast<char*>(storage->data) + offset; }
  template <class T>
  T* data() const { return static_cast<T*>(raw()); }

  static Tensor empty(const std::vector<int64_t>& shape, DType dtype);
  static Tensor zeros(const std::vector<int64_t>& shape, DType dtype);
  // A view of `storage` at `offset` bytes; validates bounds and alignment.
  static Tensor view(std::shared_ptr<Storage> storage, size_t offset, const std::vector<int64_t>& shape,
                     DType dtype);
  // Same data with another shape (numel must agree); shares storage.
  Tensor reshape(const std::vector<int64_t>& shape) const;
  // Rows [begin, end) along dim 0; shares storage.
  Tensor rows(int64_t begin, int64_t end) const;
  // Converted copy (or this, if already of that dtype). Host tensors only (DeviceError otherwise).
  Tensor to(DType dtype) const;
  Tensor clone() const;
};

std::string shape_str(const std::vector<int64_t>& shape);

// Copies between host and device memory, installed by the CUDA build when it loads (null in a
// CPU-only build, where asking for them is a DeviceError). Synchronous: the result is ready.
struct DeviceHooks {
  Tensor (*to_host)(const Tensor& t) = nullptr;    // a new host tensor with t's bytes
  Tensor (*to_device)(const Tensor& t) = nullptr;  // a new device tensor with t's bytes
  Tensor (*clone_device)(const Tensor& t) = nullptr;  // a device tensor's copy, device to device
};
DeviceHooks& device_hooks();
// t itself when on the host, else a host copy (for the few host-side reads of small tensors).
Tensor host_copy(const Tensor& t);
// A device copy of a host tensor (t itself when already on the device).
Tensor device_copy(const Tensor& t);

// Argument checks that throw NativeError with the argument's name in the message.
void expect_dtype(const Tensor& t, DType d, const char* name);
void expect_float(const Tensor& t, const char* name);
void expect_ndim(const Tensor& t, int nd, const char* name);
void expect_shape(const Tensor& t, const std::vector<int64_t>& shape, const char* name);
// Every entry of the int32 tensor `idx` (host or device: read through host_copy) is in [0, n);
// else a ValueError "name[i] = v is not <what> in [0, n)". Kernels then index with it safely.
void expect_indices_below(const Tensor& idx, int64_t n, const std::string& name, const char* what);

}  // namespace sparsify
