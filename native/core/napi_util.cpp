#include "core/napi_util.h"

#include <cmath>
#include <cstring>
#include <map>
#include <new>
#include <utility>

namespace sparsify {

// ---------------------------------------------------------------- per-env state
struct EnvData {
  Napi::FunctionReference tensor_ctor;
  Napi::FunctionReference error_classes[kNumErrorKinds];
  std::map<std::string, Napi::FunctionReference> classes;  // keep_class
};

static EnvData& env_data(Napi::Env env) {
  EnvData* d = env.GetInstanceData<EnvData>();
  if (!d) {
    d = new EnvData();
    env.SetInstanceData<EnvData>(d);
  }
  return *d;
}

Napi::Error make_error(Napi::Env env, ErrorKind kind, const std::string& msg, const std::string& code) {
  EnvData& d = env_data(env);
  Napi::FunctionReference& ctor = d.error_classes[int(kind)];
  Napi::Object err;
  if (!ctor.IsEmpty()) {
    err = ctor.New({Napi::String::New(env, msg)});  // the class sets its own code
    if (!code.empty()) err.Set("code", Napi::String::New(env, code));
  } else {
    bool type_like = kind == ErrorKind::Shape || kind == ErrorKind::DType;
    err = type_like ? Napi::TypeError::New(env, msg).Value() : Napi::Error::New(env, msg).Value();
    err.Set("code", Napi::String::New(env, code.empty() ? error_code(kind) : code));
  }
  return Napi::Error(env, err);
}

void throw_js(Napi::Env env, ErrorKind kind, const std::string& msg) { throw make_error(env, kind, msg); }

void keep_class(Napi::Env env, const char* name, Napi::Function ctor) { env_data(env).classes[name] = Napi::Persistent(ctor); }

Napi::Function kept_class(Napi::Env env, const char* name) {
  auto& classes = env_data(env).classes;
  auto it = classes.find(name);
  if (it == classes.end()) fail(ErrorKind::Internal, std::string("native class ") + name + " is not registered");
  return it->second.Value();
}

Napi::Value guarded(const Napi::CallbackInfo& info, Napi::Value (*fn)(const Napi::CallbackInfo&)) {
  try {
    return fn(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const NativeError& e) {
    throw make_error(info.Env(), e);
  } catch (const std::bad_alloc&) {
    throw make_error(info.Env(), ErrorKind::Value, "out of host memory");
  } catch (const std::exception& e) {
    throw make_error(info.Env(), ErrorKind::Internal, e.what());
  }
}

static Napi::Value set_error_classes(const Napi::CallbackInfo& info) {
  Napi::Object o = arg_object(info, 0, "classes");
  EnvData& d = env_data(info.Env());
  for (int i = 0; i < kNumErrorKinds; ++i) {
    Napi::Value v = o.Get(kErrorKinds[i].js_class);
    if (v.IsFunction()) d.error_classes[i] = Napi::Persistent(v.As<Napi::Function>());
  }
  return info.Env().Undefined();
}

// ---------------------------------------------------------------- TensorHandle
Napi::Function TensorHandle::Init(Napi::Env env) {
  Napi::Function f = DefineClass(env, "NativeTensor",
                                 {
                                     InstanceAccessor<&TensorHandle::GetShape>("shape"),
                                     InstanceAccessor<&TensorHandle::GetDType>("dtype"),
                                     InstanceAccessor<&TensorHandle::GetDevice>("device"),
                                     InstanceAccessor<&TensorHandle::GetNBytes>("nbytes"),
                                     InstanceAccessor<&TensorHandle::GetDisposed>("disposed"),
                                     InstanceMethod<&TensorHandle::Dispose>("dispose"),
                                     InstanceMethod<&TensorHandle::ToFloat32Array>("toFloat32Array"),
                                     InstanceMethod<&TensorHandle::ToInt32Array>("toInt32Array"),
                                     InstanceMethod<&TensorHandle::ReadBytes>("readBytes"),
                                     InstanceMethod<&TensorHandle::Reshape>("reshape"),
                                 });
  env_data(env).tensor_ctor = Napi::Persistent(f);
  return f;
}

TensorHandle::TensorHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorHandle>(info) {
  // Constructed only from native code (Wrap); a JS `new` gives an empty, disposed handle.
  disposed = true;
}

TensorHandle::~TensorHandle() {
  // No JS may run here; the external-memory count is left to V8's own teardown.
}

void TensorHandle::account(Napi::Env env, bool add) {
  if (add) {
    if (tensor.storage && tensor.storage->owned_heap && tensor.storage.use_count() == 1) {
      accounted_ = int64_t(tensor.storage->bytes);
      Napi::MemoryManagement::AdjustExternalMemory(env, accounted_);
    }
  } else if (accounted_) {
    Napi::MemoryManagement::AdjustExternalMemory(env, -accounted_);
    accounted_ = 0;
  }
}

Napi::Object TensorHandle::Wrap(Napi::Env env, Tensor t) {
  Napi::Object obj = env_data(env).tensor_ctor.New({});
  TensorHandle* h = Napi::ObjectWrap<TensorHandle>::Unwrap(obj);
  h->tensor = std::move(t);
  h->disposed = false;
  h->account(env, true);
  return obj;
}

bool TensorHandle::Is(Napi::Value v) {
  if (!v.IsObject()) return false;
  Napi::Env env = v.Env();
  return v.As<Napi::Object>().InstanceOf(env_data(env).tensor_ctor.Value());
}

static void check_alive(const TensorHandle* h, Napi::Env env) {
  if (h->disposed) throw_js(env, ErrorKind::Disposed, "tensor has been disposed");
}

Napi::Value TensorHandle::GetShape(const Napi::CallbackInfo& info) {
  Napi::Array a = Napi::Array::New(info.Env(), tensor.shape.size());
  for (size_t i = 0; i < tensor.shape.size(); ++i) a.Set(uint32_t(i), Napi::Number::New(info.Env(), double(tensor.shape[i])));
  return a;
}
Napi::Value TensorHandle::GetDType(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), dtype_name(tensor.dtype));
}
Napi::Value TensorHandle::GetDevice(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), tensor.device() == Device::CUDA ? "cuda" : "cpu");
}
Napi::Value TensorHandle::GetNBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), disposed ? 0.0 : double(tensor.nbytes()));
}
Napi::Value TensorHandle::GetDisposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), disposed); }

Napi::Value TensorHandle::Dispose(const Napi::CallbackInfo& info) {
  if (!disposed) {
    account(info.Env(), false);
    tensor = Tensor();
    tensor.shape = {};
    disposed = true;
  }
  return info.Env().Undefined();
}

Napi::Value TensorHandle::ToFloat32Array(const Napi::CallbackInfo& info) {
  check_alive(this, info.Env());
  try {
    Tensor t = host_copy(tensor);  // a cuda tensor is copied back (synchronously, like torch's .cpu())
    int64_t n = t.numel();
    Napi::Float32Array out = Napi::Float32Array::New(info.Env(), size_t(n));
    float* dst = out.Data();
    if (t.dtype == DType::F32) {
      if (n) std::memcpy(dst, t.raw(), size_t(n) * 4);
    } else {
      for (int64_t i = 0; i < n; ++i) dst[i] = load_as_f32(t.raw(), t.dtype, i);
    }
    return out;
  } catch (const NativeError& e) {
    throw make_error(info.Env(), e);
  }
}

Napi::Value TensorHandle::ToInt32Array(const Napi::CallbackInfo& info) {
  check_alive(this, info.Env());
  if (tensor.dtype != DType::I32)
    throw_js(info.Env(), ErrorKind::DType, std::string("toInt32Array needs an int32 tensor, got ") + dtype_name(tensor.dtype));
  try {
    Tensor t = host_copy(tensor);
    int64_t n = t.numel();
    Napi::Int32Array out = Napi::Int32Array::New(info.Env(), size_t(n));
    if (n) std::memcpy(out.Data(), t.raw(), size_t(n) * 4);
    return out;
  } catch (const NativeError& e) {
    throw make_error(info.Env(), e);
  }
}

Napi::Value TensorHandle::ReadBytes(const Napi::CallbackInfo& info) {
  check_alive(this, info.Env());
  try {
    Tensor t = host_copy(tensor);
    size_t n = t.nbytes();
    Napi::Uint8Array out = Napi::Uint8Array::New(info.Env(), n);
    if (n) std::memcpy(out.Data(), t.raw(), n);
    return out;
  } catch (const NativeError& e) {
    throw make_error(info.Env(), e);
  }
}

Napi::Value TensorHandle::Reshape(const Napi::CallbackInfo& info) {
  check_alive(this, info.Env());
  try {
    return Wrap(info.Env(), tensor.reshape(value_to_shape(info[0], "shape")));
  } catch (const NativeError& e) {
    throw make_error(info.Env(), e);
  }
}

// ---------------------------------------------------------------- argument readers
static std::string arg_name(const char* name) { return std::string("argument '") + name + "'"; }

// True while a function exported with Accepts::AnyDeviceTensors runs: only those accept device
// tensors, every other (CPU) function reads its tensors' memory on the host.
static thread_local bool t_device_tensors_ok = false;

namespace {
// Sets t_device_tensors_ok for the duration of one call (restored on exceptions too).
struct DeviceTensorsAllowed {
  bool saved = t_device_tensors_ok;
  explicit DeviceTensorsAllowed(bool ok = true) { t_device_tensors_ok = ok; }
  ~DeviceTensorsAllowed() { t_device_tensors_ok = saved; }
};
}  // namespace

HostTensorsOnly::HostTensorsOnly() : saved_(t_device_tensors_ok) { t_device_tensors_ok = false; }
HostTensorsOnly::~HostTensorsOnly() { t_device_tensors_ok = saved_; }
AnyDeviceTensors::AnyDeviceTensors() : saved_(t_device_tensors_ok) { t_device_tensors_ok = true; }
AnyDeviceTensors::~AnyDeviceTensors() { t_device_tensors_ok = saved_; }

Tensor value_to_tensor(Napi::Value v, const char* name) {
  if (!TensorHandle::Is(v)) fail(ErrorKind::DType, arg_name(name) + " must be a Tensor");
  TensorHandle* h = Napi::ObjectWrap<TensorHandle>::Unwrap(v.As<Napi::Object>());
  if (h->disposed) fail(ErrorKind::Disposed, arg_name(name) + " is a disposed tensor");
  if (h->tensor.device() != Device::CPU && !t_device_tensors_ok)
    fail(ErrorKind::Device, arg_name(name) + " is a cuda tensor, but this operation runs on the CPU; move it with `await t.to('cpu')`");
  return h->tensor;
}

Tensor arg_tensor(const Napi::CallbackInfo& info, size_t i, const char* name) { return value_to_tensor(info[i], name); }

Tensor value_to_tensor_any_device(Napi::Value v, const char* name) {
  DeviceTensorsAllowed allow;
  return value_to_tensor(v, name);
}

Tensor arg_tensor_any_device(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return value_to_tensor_any_device(info[i], name);
}

Tensor arg_optional_tensor(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info[i].IsUndefined() || info[i].IsNull()) return Tensor();
  return value_to_tensor(info[i], name);
}

int64_t arg_int(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsNumber()) fail(ErrorKind::Value, arg_name(name) + " must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(std::fabs(d) < 9.2e18) || d != double(int64_t(d)))  // range first: the cast is UB out of range
    fail(ErrorKind::Value, arg_name(name) + " must be an integer, got " + std::to_string(d));
  return int64_t(d);
}

double arg_number(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsNumber()) fail(ErrorKind::Value, arg_name(name) + " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

bool arg_bool(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsBoolean()) fail(ErrorKind::Value, arg_name(name) + " must be a boolean");
  return info[i].As<Napi::Boolean>().Value();
}

std::string arg_string(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsString()) fail(ErrorKind::Value, arg_name(name) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

Napi::Object arg_object(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsObject()) fail(ErrorKind::Value, arg_name(name) + " must be an object");
  return info[i].As<Napi::Object>();
}

std::vector<int64_t> value_to_shape(Napi::Value v, const char* name) {
  if (!v.IsArray()) fail(ErrorKind::Shape, arg_name(name) + " must be an array of dimensions");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int64_t> shape;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    if (!e.IsNumber()) fail(ErrorKind::Shape, arg_name(name) + " has a non-numeric dimension");
    double d = e.As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d > 9.0e15 || d != double(int64_t(d)))  // range first: the cast is UB out of range
      fail(ErrorKind::Shape, arg_name(name) + " has an invalid dimension " + std::to_string(d));
    shape.push_back(int64_t(d));
  }
  return shape;
}

DType value_to_dtype(Napi::Value v, const char* name) {
  if (!v.IsString()) fail(ErrorKind::DType, arg_name(name) + " must be a dtype name");
  std::string s = v.As<Napi::String>().Utf8Value();
  DType d;
  if (!dtype_from_name(s, &d)) fail(ErrorKind::DType, arg_name(name) + ": unknown dtype '" + s + "'");
  return d;
}

double opt_number(Napi::Object o, const char* key, double dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (!v.IsNumber()) fail(ErrorKind::Value, std::string("option '") + key + "' must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

int64_t opt_int(Napi::Object o, const char* key, int64_t dflt) {
  double d = opt_number(o, key, double(dflt));
  if (!(std::fabs(d) < 9.2e18) || d != double(int64_t(d)))  // range first: the cast is UB out of range
    fail(ErrorKind::Value, std::string("option '") + key + "' must be an integer");
  return int64_t(d);
}

bool opt_bool(Napi::Object o, const char* key, bool dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (!v.IsBoolean()) fail(ErrorKind::Value, std::string("option '") + key + "' must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string opt_string(Napi::Object o, const char* key, const std::string& dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (!v.IsString()) fail(ErrorKind::Value, std::string("option '") + key + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

Tensor opt_tensor(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return Tensor();
  return value_to_tensor(v, key);
}

// ---------------------------------------------------------------- async jobs
namespace {
class Job : public Napi::AsyncWorker {
 public:
  Job(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done)
      : Napi::AsyncWorker(env, "sparsify"), deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)), done_(std::move(done)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      work_();
    } catch (const NativeError& e) {
      kind_ = e.kind;
      code_ = e.code;
      SetError(e.what());
    } catch (const std::bad_alloc&) {
      kind_ = ErrorKind::Value;
      SetError("out of host memory");
    } catch (const std::exception& e) {
      kind_ = ErrorKind::Internal;
      SetError(e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    try {
      deferred_.Resolve(done_(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (const NativeError& e) {
      deferred_.Reject(make_error(env, e).Value());
    } catch (const std::exception& e) {
      deferred_.Reject(make_error(env, ErrorKind::Internal, e.what()).Value());
    }
  }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(make_error(Env(), kind_, e.Message(), code_).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> done_;
  ErrorKind kind_ = ErrorKind::Internal;
  std::string code_;
};
}  // namespace

Napi::Promise run_async(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done) {
  Job* job = new Job(env, std::move(work), std::move(done));
  Napi::Promise p = job->promise();
  job->Queue();
  return p;
}

// ---------------------------------------------------------------- registry
static std::vector<std::pair<const char*, InitFn>>& registry() {
  static std::vector<std::pair<const char*, InitFn>> r;
  return r;
}

Registrar::Registrar(const char* name, InitFn fn) { registry().emplace_back(name, fn); }

void export_fn(Napi::Env env, Napi::Object exports, const char* name, Napi::Value (*fn)(const Napi::CallbackInfo&),
               Accepts accepts, Audience audience) {
  auto host_only = [](const Napi::CallbackInfo& info) -> Napi::Value {
    auto f = reinterpret_cast<Napi::Value (*)(const Napi::CallbackInfo&)>(info.Data());
    // Clear the flag rather than leave it: a device function that reads an options object can run
    // JS (a getter) that calls a CPU function on the same thread; the outer call's flag would let
    // that CPU function accept, and then read, a device pointer.
    DeviceTensorsAllowed deny(false);
    return guarded(info, f);
  };
  auto any_device = [](const Napi::CallbackInfo& info) -> Napi::Value {
    auto f = reinterpret_cast<Napi::Value (*)(const Napi::CallbackInfo&)>(info.Data());
    DeviceTensorsAllowed allow;
    return guarded(info, f);
  };
  Napi::Object target = exports;
  if (audience == Audience::Tests) {
    if (!exports.Has("testing")) exports.Set("testing", Napi::Object::New(env));
    target = exports.Get("testing").As<Napi::Object>();
  }
  void* data = reinterpret_cast<void*>(fn);
  if (accepts == Accepts::AnyDeviceTensors) target.Set(name, Napi::Function::New(env, any_device, name, data));
  else target.Set(name, Napi::Function::New(env, host_only, name, data));
}

// [{jsClass, code}] in ErrorKind order (tests check it against the JS classes).
static Napi::Value error_kinds(const Napi::CallbackInfo& info) {
  Napi::Array out = Napi::Array::New(info.Env(), kNumErrorKinds);
  for (int i = 0; i < kNumErrorKinds; ++i) {
    Napi::Object e = Napi::Object::New(info.Env());
    e.Set("jsClass", kErrorKinds[i].js_class);
    e.Set("code", kErrorKinds[i].code);
    out.Set(uint32_t(i), e);
  }
  return out;
}

void init_all(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeTensor", TensorHandle::Init(env));
  export_fn(env, exports, "setErrorClasses", set_error_classes);
  export_fn(env, exports, "errorKinds", error_kinds, Accepts::HostTensors, Audience::Tests);
  for (auto& [name, fn] : registry()) fn(env, exports);
}

}  // namespace sparsify
