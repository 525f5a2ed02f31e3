// Native errors carry a code that the JS side maps onto its typed error classes
// (ShapeError, DTypeError, ...). Kernels throw these; bindings translate them.
#pragma once
#include <stdexcept>
#include <string>
#include <utility>

namespace sparsify {

enum class ErrorKind { Shape, DType, Value, File, Device, Disposed, Internal };

struct NativeError : std::runtime_error {
  ErrorKind kind;
  std::string code;  // a more specific JS error code (e.g. ERR_SPARSIFY_CUDA_OOM); empty: the kind's
  NativeError(ErrorKind k, const std::string& msg, std::string c = "")
      : std::runtime_error(msg), kind(k), code(std::move(c)) {}
};

inline const char* error_code(ErrorKind k) {
  switch (k) {
    case ErrorKind::Shape: return "ERR_SPARSIFY_SHAPE";
    case ErrorKind::DType: return "ERR_SPARSIFY_DTYPE";
    case ErrorKind::Value: return "ERR_SPARSIFY_VALUE";
    case ErrorKind::File: return "ERR_SPARSIFY_FILE";
    case ErrorKind::Device: return "ERR_SPARSIFY_DEVICE";
    case ErrorKind::Disposed: return "ERR_SPARSIFY_DISPOSED";
    case ErrorKind::Internal: return "ERR_SPARSIFY_INTERNAL";
  }
  return "ERR_SPARSIFY_INTERNAL";
}

[[noreturn]] inline void fail(ErrorKind k, const std::string& msg) { throw NativeError(k, msg); }

#define SPX_CHECK(cond, kind, msg)                                   \
  do {                                                               \
    if (!(cond)) ::sparsify::fail(::sparsify::ErrorKind::kind, msg); \
  } while (0)

}  // namespace sparsify
