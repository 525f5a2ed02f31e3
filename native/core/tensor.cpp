#include "core/tensor.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/parallel.h"

namespace sparsify {

std::shared_ptr<Storage> Storage::allocate(size_t bytes) {
  auto s = std::make_shared<Storage>();
  size_t rounded = (bytes + 63) / 64 * 64;
  if (rounded == 0) rounded = 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) fail(ErrorKind::Value, "out of host memory allocating " + std::to_string(bytes) + " bytes");
  s->data = p;
  s->bytes = bytes;
  s->owned_heap = true;
  s->release = [](void* d, size_t) { std::free(d); };
  return s;
}

std::shared_ptr<Storage> Storage::map_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(ErrorKind::File, "cannot open " + path + ": " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail(ErrorKind::File, "cannot stat " + path + ": " + std::strerror(e));
  }
  auto s = std::make_shared<Storage>();
  s->bytes = size_t(st.st_size);
  if (s->bytes == 0) {
    ::close(fd);
    s->data = nullptr;
    return s;
  }
  void* p = ::mmap(nullptr, s->bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  ::close(fd);
  if (p == MAP_FAILED) fail(ErrorKind::File, "cannot mmap " + path + ": " + std::strerror(e));
  s->data = p;
  s->release = [](void* d, size_t n) { ::munmap(d, n); };
  return s;
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

static void check_shape_valid(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto d : shape) {
    if (d < 0) fail(ErrorKind::Shape, "negative dimension in shape " + shape_str(shape));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / 8 / d)
      fail(ErrorKind::Shape, "shape " + shape_str(shape) + " is too large");
    n *= d;
  }
}

Tensor Tensor::empty(const std::vector<int64_t>& shape, DType dtype) {
  check_shape_valid(shape);
  Tensor t;
  t.shape = shape;
  t.dtype = dtype;
  t.storage = Storage::allocate(t.nbytes());
  return t;
}

Tensor Tensor::zeros(const std::vector<int64_t>& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::view(std::shared_ptr<Storage> storage, size_t offset, const std::vector<int64_t>& shape,
                    DType dtype) {
  check_shape_valid(shape);
  Tensor t;
  t.shape = shape;
  t.dtype = dtype;
  size_t n = t.nbytes();
  if (!storage) fail(ErrorKind::Value, "view of a null storage");
  if (offset > storage->bytes || n > storage->bytes - offset)
    fail(ErrorKind::File, "tensor bytes [" + std::to_string(offset) + ", " + std::to_string(offset + n) +
                              ") exceed the buffer of " + std::to_string(storage->bytes) + " bytes");
  t.storage = std::move(storage);
  t.offset = offset;
  return t;
}

Tensor Tensor::reshape(const std::vector<int64_t>& new_shape) const {
  check_shape_valid(new_shape);
  Tensor t = *this;
  t.shape = new_shape;
  if (t.numel() != numel())
    fail(ErrorKind::Shape, "cannot reshape " + shape_str(shape) + " to " + shape_str(new_shape));
  return t;
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
  if (shape.empty()) fail(ErrorKind::Shape, "rows() of a 0-d tensor");
  if (begin < 0 || end < begin || end > shape[0])
    fail(ErrorKind::Shape, "rows [" + std::to_string(begin) + ", " + std::to_string(end) + ") out of range for " +
                               shape_str(shape));
  Tensor t = *this;
  int64_t row = numel() / (shape[0] ? shape[0] : 1);
  t.shape[0] = end - begin;
  t.offset = offset + size_t(begin * row) * dtype_size(dtype);
  return t;
}

// Host-side reads of a device pointer would crash: every host loop over data goes through here.
static void expect_host(const Tensor& t, const char* what) {
  if (t.device() != Device::CPU)
    fail(ErrorKind::Device, std::string(what) + " needs a host tensor, got a cuda tensor; move it with `await t.to('cpu')`");
}

Tensor Tensor::to(DType d) const {
  if (d == dtype) return *this;
  expect_host(*this, "dtype conversion");
  Tensor out = empty(shape, d);
  int64_t n = numel();
  const void* src = raw();
  DType sd = dtype;
  void* dst = out.raw();
  parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      if (d == DType::I32) {
        static_cast<int32_t*>(dst)[i] = sd == DType::I32 ? static_cast<const int32_t*>(src)[i]
                                                         : int32_t(load_as_f32(src, sd, i));
        continue;
      }
      float v = load_as_f32(src, sd, i);
      switch (d) {
        case DType::F32: static_cast<float*>(dst)[i] = v; break;
        case DType::BF16: static_cast<uint16_t*>(dst)[i] = f32_to_bf16(v); break;
        case DType::F16: static_cast<uint16_t*>(dst)[i] = f32_to_f16(v); break;
        default: break;
      }
    }
  });
  return out;
}

Tensor Tensor::clone() const {
  if (device() != Device::CPU) {
    if (!device_hooks().clone_device) fail(ErrorKind::Device, "a cuda tensor cannot be cloned: this build has no CUDA backend");
    return device_hooks().clone_device(*this);
  }
  Tensor out = empty(shape, dtype);
  std::memcpy(out.raw(), raw(), nbytes());
  return out;
}

void expect_indices_below(const Tensor& idx, int64_t n, const std::string& name, const char* what) {
  expect_dtype(idx, DType::I32, name.c_str());
  const Tensor host = host_copy(idx);
  const int32_t* p = host.data<int32_t>();
  for (int64_t i = 0, len = host.numel(); i < len; ++i)
    if (p[i] < 0 || p[i] >= n)
      fail(ErrorKind::Value, name + "[" + std::to_string(i) + "] = " + std::to_string(p[i]) + " is not " + what +
                                 " in [0, " + std::to_string(n) + ")");
}

DeviceHooks& device_hooks() {
  static DeviceHooks hooks;
  return hooks;
}

Tensor host_copy(const Tensor& t) {
  if (!t.defined() || t.device() == Device::CPU) return t;
  if (!device_hooks().to_host) fail(ErrorKind::Device, "a cuda tensor cannot be read: this build has no CUDA backend");
  return device_hooks().to_host(t);
}

Tensor device_copy(const Tensor& t) {
  if (!t.defined() || t.device() == Device::CUDA) return t;
  if (!device_hooks().to_device)
    fail(ErrorKind::Device, "device 'cuda' is not available: this build of sparsify has no CUDA backend (CPU only)");
  return device_hooks().to_device(t);
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

void expect_dtype(const Tensor& t, DType d, const char* name) {
  if (!t.defined()) fail(ErrorKind::Value, std::string(name) + " is missing");
  if (t.dtype != d)
    fail(ErrorKind::DType, std::string(name) + " must be " + dtype_name(d) + ", got " + dtype_name(t.dtype));
}

void expect_float(const Tensor& t, const char* name) {
  if (!t.defined()) fail(ErrorKind::Value, std::string(name) + " is missing");
  if (!is_float(t.dtype)) fail(ErrorKind::DType, std::string(name) + " must be a float tensor, got int32");
}

void expect_ndim(const Tensor& t, int nd, const char* name) {
  if (!t.defined()) fail(ErrorKind::Value, std::string(name) + " is missing");
  if (t.ndim() != nd)
    fail(ErrorKind::Shape, std::string(name) + " must have " + std::to_string(nd) + " dimensions, got shape " +
                               shape_str(t.shape));
}

void expect_shape(const Tensor& t, const std::vector<int64_t>& shape, const char* name) {
  if (!t.defined()) fail(ErrorKind::Value, std::string(name) + " is missing");
  if (t.shape != shape)
    fail(ErrorKind::Shape, std::string(name) + " must have shape " + shape_str(shape) + ", got " + shape_str(t.shape));
}

}  // namespace sparsify
