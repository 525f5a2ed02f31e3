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

// The native side's one table of error kinds, in ErrorKind order: the JS class each kind is
// raised as (registered by @sparsify/core with setErrorClasses) and its code, which is the
// class's own `code` (packages/core/src/errors.ts; test/core/errors.test.ts checks they agree).
// The code is set here only for an addon used without registered classes.
struct ErrorKindInfo {
  const char* js_class;
  const char* code;
};
inline constexpr ErrorKindInfo kErrorKinds[] = {
    {"ShapeError", "ERR_SPARSIFY_SHAPE"},       {"DTypeError", "ERR_SPARSIFY_DTYPE"},
    {"ValueError", "ERR_SPARSIFY_VALUE"},       {"FileFormatError", "ERR_SPARSIFY_FILE"},
    {"DeviceError", "ERR_SPARSIFY_DEVICE"},     {"DisposedError", "ERR_SPARSIFY_DISPOSED"},
    {"InternalError", "ERR_SPARSIFY_INTERNAL"},
};
inline constexpr int kNumErrorKinds = int(sizeof(kErrorKinds) / sizeof(kErrorKinds[0]));
static_assert(kNumErrorKinds == int(ErrorKind::Internal) + 1, "kErrorKinds must list every ErrorKind in order");

inline const char* error_code(ErrorKind k) { return kErrorKinds[int(k)].code; }

[[noreturn]] inline void fail(ErrorKind k, const std::string& msg) { throw NativeError(k, msg); }

#define SPX_CHECK(cond, kind, msg)                                   \
  do {                                                               \
    if (!(cond)) ::sparsify::fail(::sparsify::ErrorKind::kind, msg); \
  } while (0)

}  // namespace sparsify
