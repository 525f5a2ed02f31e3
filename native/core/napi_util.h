// Glue between kernels and JS: the Tensor handle class, argument readers that throw typed JS
// errors naming the argument, the async job runner (work off the event loop, result as a
// Promise), and the registry through which each bindings/*.cpp file adds its functions.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/tensor.h"

namespace sparsify {

// ---- errors ----
// Creates an instance of the JS error class registered for `kind` (see setErrorClasses).
// `code` overrides the kind's code (the registered class's, else error_code(kind)) when not empty.
Napi::Error make_error(Napi::Env env, ErrorKind kind, const std::string& msg, const std::string& code = "");
inline Napi::Error make_error(Napi::Env env, const NativeError& e) { return make_error(env, e.kind, e.what(), e.code); }
[[noreturn]] void throw_js(Napi::Env env, ErrorKind kind, const std::string& msg);

// ObjectWrap classes whose instances native code creates (e.g. in an async job's done): the
// constructor is kept per env under `name`.
void keep_class(Napi::Env env, const char* name, Napi::Function ctor);
Napi::Function kept_class(Napi::Env env, const char* name);

// Runs fn and turns NativeError / std::exception into typed JS exceptions.
Napi::Value guarded(const Napi::CallbackInfo& info, Napi::Value (*fn)(const Napi::CallbackInfo&));
// The same for the body of an ObjectWrap constructor or method (any result type).
template <class F>
auto translate(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (const NativeError& e) {
    throw make_error(env, e);
  } catch (const std::bad_alloc&) {
    throw make_error(env, ErrorKind::Value, "out of host memory");
  } catch (const std::exception& e) {
    throw make_error(env, ErrorKind::Internal, e.what());
  }
}

// ---- tensor handles ----
class TensorHandle : public Napi::ObjectWrap<TensorHandle> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Object Wrap(Napi::Env env, Tensor t);
  static bool Is(Napi::Value v);
  explicit TensorHandle(const Napi::CallbackInfo& info);
  ~TensorHandle() override;
  Tensor tensor;
  bool disposed = false;

 private:
  void account(Napi::Env env, bool add);
  int64_t accounted_ = 0;
  Napi::Value GetShape(const Napi::CallbackInfo& info);
  Napi::Value GetDType(const Napi::CallbackInfo& info);
  Napi::Value GetDevice(const Napi::CallbackInfo& info);
  Napi::Value GetNBytes(const Napi::CallbackInfo& info);
  Napi::Value GetDisposed(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value ToFloat32Array(const Napi::CallbackInfo& info);
  Napi::Value ToInt32Array(const Napi::CallbackInfo& info);
  Napi::Value ReadBytes(const Napi::CallbackInfo& info);
  Napi::Value Reshape(const Napi::CallbackInfo& info);
};

// ---- argument readers (JS thread) ----
Tensor arg_tensor(const Napi::CallbackInfo& info, size_t i, const char* name);
// undefined/null -> an undefined Tensor
Tensor arg_optional_tensor(const Napi::CallbackInfo& info, size_t i, const char* name);
// Tensors on the device ('cuda') are a DeviceError here, unless the running function was exported
// with Accepts::AnyDeviceTensors (see export_fn) or read with the *_any_device variants.
Tensor value_to_tensor(Napi::Value v, const char* name);
Tensor value_to_tensor_any_device(Napi::Value v, const char* name);
// For native entry points that are not export_fn functions (class methods): while one lives,
// tensor readers reject device tensors even inside a device call (e.g. from an options getter).
class HostTensorsOnly {
 public:
  HostTensorsOnly();
  ~HostTensorsOnly();
  HostTensorsOnly(const HostTensorsOnly&) = delete;
  HostTensorsOnly& operator=(const HostTensorsOnly&) = delete;

 private:
  bool saved_;
};
// The method of a device object (an ObjectWrap class of the CUDA build): while one lives, tensor
// readers accept tensors on any device, as in an Accepts::AnyDeviceTensors function.
class AnyDeviceTensors {
 public:
  AnyDeviceTensors();
  ~AnyDeviceTensors();
  AnyDeviceTensors(const AnyDeviceTensors&) = delete;
  AnyDeviceTensors& operator=(const AnyDeviceTensors&) = delete;

 private:
  bool saved_;
};
Tensor arg_tensor_any_device(const Napi::CallbackInfo& info, size_t i, const char* name);
int64_t arg_int(const Napi::CallbackInfo& info, size_t i, const char* name);
double arg_number(const Napi::CallbackInfo& info, size_t i, const char* name);
bool arg_bool(const Napi::CallbackInfo& info, size_t i, const char* name);
std::string arg_string(const Napi::CallbackInfo& info, size_t i, const char* name);
Napi::Object arg_object(const Napi::CallbackInfo& info, size_t i, const char* name);
std::vector<int64_t> value_to_shape(Napi::Value v, const char* name);
DType value_to_dtype(Napi::Value v, const char* name);
// Options-object readers: missing keys give the default.
double opt_number(Napi::Object o, const char* key, double dflt);
int64_t opt_int(Napi::Object o, const char* key, int64_t dflt);
bool opt_bool(Napi::Object o, const char* key, bool dflt);
std::string opt_string(Napi::Object o, const char* key, const std::string& dflt);
Tensor opt_tensor(Napi::Object o, const char* key);

// ---- async jobs ----
// work() runs on a libuv worker thread and must not touch JS; done(env) runs on the JS thread
// and builds the resolved value. NativeErrors from work() reject with the typed JS error.
Napi::Promise run_async(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done);

// ---- registry ----
using InitFn = void (*)(Napi::Env env, Napi::Object exports);
struct Registrar {
  Registrar(const char* name, InitFn fn);
};
void init_all(Napi::Env env, Napi::Object exports);
#define SPX_REGISTER(id, fn) static ::sparsify::Registrar spx_registrar_##id(#id, fn)

// What an exported function accepts: tensors in host memory only, or on any device.
enum class Accepts { HostTensors, AnyDeviceTensors };
// Who an exported function is for: the packages, or the tests and benchmarks only (those go
// into the `testing` object of the exports, so the product surface stays what the packages use).
enum class Audience { Product, Tests };

// Adds exports[name] (or exports.testing[name]) = a guarded function with its device acceptance.
void export_fn(Napi::Env env, Napi::Object exports, const char* name, Napi::Value (*fn)(const Napi::CallbackInfo&),
               Accepts accepts = Accepts::HostTensors, Audience audience = Audience::Product);

}  // namespace sparsify
