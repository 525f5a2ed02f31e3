// Creating tensors from JS data and files, dtype conversion, thread control.
#include <cmath>
#include <cstring>

#include "core/napi_util.h"
#include "core/parallel.h"

namespace sparsify {
namespace {

// tensorFromArray(typedArray, shape, dtype): copies. Float32Array -> any float dtype (converted),
// Int32Array -> int32, Uint8Array -> raw little-endian bytes of `dtype`.
Napi::Value tensor_from_array(const Napi::CallbackInfo& info) {
  if (!info[0].IsTypedArray()) fail(ErrorKind::Value, "argument 'data' must be a typed array");
  auto ta = info[0].As<Napi::TypedArray>();
  std::vector<int64_t> shape = value_to_shape(info[1], "shape");
  DType dtype = value_to_dtype(info[2], "dtype");
  Tensor t = Tensor::empty(shape, dtype);
  int64_t n = t.numel();
  const uint8_t* src = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  switch (ta.TypedArrayType()) {
    case napi_float32_array: {
      if (dtype == DType::I32) fail(ErrorKind::DType, "a Float32Array cannot fill an int32 tensor");
      if (int64_t(ta.ElementLength()) != n)
        fail(ErrorKind::Shape, "data has " + std::to_string(ta.ElementLength()) + " elements but shape " +
                                   shape_str(shape) + " needs " + std::to_string(n));
      const float* f = reinterpret_cast<const float*>(src);
      if (dtype == DType::F32) {
        if (n) std::memcpy(t.raw(), f, size_t(n) * 4);
      } else {
        uint16_t* d = t.data<uint16_t>();
        for (int64_t i = 0; i < n; ++i) d[i] = dtype == DType::BF16 ? f32_to_bf16(f[i]) : f32_to_f16(f[i]);
      }
      break;
    }
    case napi_int32_array: {
      if (dtype != DType::I32) fail(ErrorKind::DType, "an Int32Array can only fill an int32 tensor");
      if (int64_t(ta.ElementLength()) != n)
        fail(ErrorKind::Shape, "data has " + std::to_string(ta.ElementLength()) + " elements but shape " +
                                   shape_str(shape) + " needs " + std::to_string(n));
      if (n) std::memcpy(t.raw(), src, size_t(n) * 4);
      break;
    }
    case napi_uint8_array: {
      if (ta.ByteLength() != t.nbytes())
        fail(ErrorKind::Shape, "data has " + std::to_string(ta.ByteLength()) + " bytes but " + dtype_name(dtype) +
                                   " shape " + shape_str(shape) + " needs " + std::to_string(t.nbytes()));
      if (n) std::memcpy(t.raw(), src, t.nbytes());
      break;
    }
    default:
      fail(ErrorKind::DType, "data must be a Float32Array, Int32Array or Uint8Array");
  }
  return TensorHandle::Wrap(info.Env(), std::move(t));
}

Napi::Value tensor_empty(const Napi::CallbackInfo& info) {
  return TensorHandle::Wrap(info.Env(), Tensor::empty(value_to_shape(info[0], "shape"), value_to_dtype(info[1], "dtype")));
}

Napi::Value tensor_zeros(const Napi::CallbackInfo& info) {
  return TensorHandle::Wrap(info.Env(), Tensor::zeros(value_to_shape(info[0], "shape"), value_to_dtype(info[1], "dtype")));
}

// tensorsFromFile(path, [{offset, shape, dtype}]): memory-maps the file once and returns views.
// Offsets are absolute byte offsets; each view is bounds-checked against the file size.
Napi::Value tensors_from_file(const Napi::CallbackInfo& info) {
  std::string path = arg_string(info, 0, "path");
  if (!info[1].IsArray()) fail(ErrorKind::Value, "argument 'entries' must be an array");
  Napi::Array entries = info[1].As<Napi::Array>();
  auto storage = Storage::map_file(path);
  Napi::Array out = Napi::Array::New(info.Env(), entries.Length());
  for (uint32_t i = 0; i < entries.Length(); ++i) {
    Napi::Value ev = entries.Get(i);
    if (!ev.IsObject()) fail(ErrorKind::Value, "entries[" + std::to_string(i) + "] must be an object");
    Napi::Object e = ev.As<Napi::Object>();
    // Range-check the double before converting it (a cast of NaN or >= 2^63 is undefined).
    Napi::Value ov = e.Get("offset");
    double offd = ov.IsNumber() ? ov.As<Napi::Number>().DoubleValue() : -1.0;
    if (!(offd >= 0) || offd > 9.0e15 || offd != std::floor(offd))
      fail(ErrorKind::File, path + ": entry " + std::to_string(i) + " has an invalid offset");
    int64_t off = int64_t(offd);
    DType dt = value_to_dtype(e.Get("dtype"), "dtype");
    std::vector<int64_t> shape = value_to_shape(e.Get("shape"), "shape");
    Tensor t;
    try {
      t = Tensor::view(storage, size_t(off), shape, dt);
    } catch (const NativeError& err) {
      fail(ErrorKind::File, path + ": " + err.what());
    }
    // Misaligned views (legal in safetensors) are copied so kernels can assume alignment.
    if ((reinterpret_cast<uintptr_t>(t.raw()) % dtype_size(dt)) != 0) t = t.clone();
    out.Set(i, TensorHandle::Wrap(info.Env(), std::move(t)));
  }
  return out;
}

// toDtype(tensor, dtype) -> Promise<tensor>
Napi::Value to_dtype(const Napi::CallbackInfo& info) {
  Tensor t = arg_tensor(info, 0, "tensor");
  DType d = value_to_dtype(info[1], "dtype");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [t, d, out] { *out = t.to(d).clone(); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

// tensorToDevice(tensor, 'cpu' | 'cuda', sync?) -> Promise<tensor> (sync: the tensor): a copy on
// that device (the tensor itself when already there). 'cuda' in a CPU-only build is a DeviceError.
Napi::Value tensor_to_device(const Napi::CallbackInfo& info) {
  Tensor t = arg_tensor_any_device(info, 0, "tensor");
  std::string dev = arg_string(info, 1, "device");
  if (dev != "cpu" && dev != "cuda") fail(ErrorKind::Value, "device must be 'cpu' or 'cuda', got '" + dev + "'");
  const bool to_cuda = dev == "cuda";
  if (to_cuda && !device_hooks().to_device)
    fail(ErrorKind::Device, "device 'cuda' is not available: this build of sparsify has no CUDA backend (CPU only)");
  if (info.Length() > 2 && info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value())
    return TensorHandle::Wrap(info.Env(), to_cuda ? device_copy(t) : host_copy(t));
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [t, to_cuda, out] { *out = to_cuda ? device_copy(t) : host_copy(t); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

Napi::Value clone_tensor(const Napi::CallbackInfo& info) {
  Tensor t = arg_tensor_any_device(info, 0, "tensor");  // a cuda tensor is cloned on the device
  return TensorHandle::Wrap(info.Env(), t.clone());
}

Napi::Value get_num_threads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), num_threads()); }

Napi::Value set_threads(const Napi::CallbackInfo& info) {
  set_num_threads(int(arg_int(info, 0, "n")));
  return Napi::Number::New(info.Env(), num_threads());
}

Napi::Value build_info(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
#ifdef SPARSIFY_HAVE_CUDA
  o.Set("cuda", true);
#else
  o.Set("cuda", false);
#endif
#if defined(__AVX2__) && defined(__FMA__)
  o.Set("simd", "avx2+fma");
#else
  o.Set("simd", "generic");
#endif
  o.Set("threads", num_threads());
  return o;
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "tensorFromArray", tensor_from_array);
  export_fn(env, exports, "tensorEmpty", tensor_empty);
  export_fn(env, exports, "tensorZeros", tensor_zeros);
  export_fn(env, exports, "tensorsFromFile", tensors_from_file);
  export_fn(env, exports, "toDtype", to_dtype);
  export_fn(env, exports, "cloneTensor", clone_tensor);
  export_fn(env, exports, "tensorToDevice", tensor_to_device);
  export_fn(env, exports, "numThreads", get_num_threads);
  export_fn(env, exports, "setNumThreads", set_threads);
  export_fn(env, exports, "buildInfo", build_info);
}

}  // namespace
SPX_REGISTER(tensor_ops, init);
}  // namespace sparsify
