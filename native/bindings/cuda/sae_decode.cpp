// N-API bindings (CUDA build only): The sparse decoder on the device (CPU twin: saeDecode in native/bindings/cpu/sae.cpp): cudaDecode and the
// resident decoder cudaDecoder*.
// GPU failures reject with DeviceError (codes: ERR_SPARSIFY_CUDA_OOM, _STICKY, _UNAVAILABLE, ERR_SPARSIFY_DEVICE).
#include <cuda_runtime_api.h>

#include <cmath>
#include <functional>
#include <memory>

#include "bindings/cuda/cuda_binding_util.h"
#include "cuda/cuda_check.h"
#include "cuda/cuda_context.h"
#include "cuda/cuda_ops.h"
#include "core/napi_util.h"

namespace sparsify {
namespace {
using namespace cuda_binding;

// cudaDecode(acts [N,k], indices [N,k] int32, wDec [M,D], bDec? [D]) -> Promise<[N,D] f32>
Napi::Value cuda_decode(const Napi::CallbackInfo& info) {
  Tensor a = arg_tensor(info, 0, "acts");
  Tensor i = arg_tensor(info, 1, "indices");
  Tensor w = arg_tensor(info, 2, "wDec");
  Tensor b = arg_optional_tensor(info, 3, "bDec");
  check_sparse_pair(a, i, "acts", "indices");
  expect_float(w, "wDec");
  expect_ndim(w, 2, "wDec");
  expect_indices(i, w.dim(0), "indices");
  if (b.defined()) expect_vec(b, w.dim(1), "bDec");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [=] { *out = cuda::decode(a, i, w, b); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

// ---- resident decoder: cudaDecoderCreate(wDec, bDec?) -> Promise<decoder>;
// cudaDecoderDecode(decoder, acts, indices) -> Promise<[N,D] f32>; cudaDecoderDispose(decoder).
using DecoderHolder = std::shared_ptr<cuda::ResidentDecoder>;

DecoderHolder& decoder_arg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Value v = info[i];
  Napi::Value ext = v.IsObject() ? v.As<Napi::Object>().Get("_native") : v;
  if (!ext.IsExternal()) fail(ErrorKind::Value, "argument 'decoder' must be an object from cudaDecoderCreate");
  DecoderHolder* h = ext.As<Napi::External<DecoderHolder>>().Data();
  if (!*h) fail(ErrorKind::Disposed, "the CUDA decoder was disposed");
  return *h;
}

Napi::Value cuda_decoder_create(const Napi::CallbackInfo& info) {
  Tensor w = arg_tensor(info, 0, "wDec");
  Tensor b = arg_optional_tensor(info, 1, "bDec");
  expect_float(w, "wDec");
  expect_ndim(w, 2, "wDec");
  if (b.defined()) expect_vec(b, w.dim(1), "bDec");
  auto res = std::make_shared<DecoderHolder>();
  return run_async(
      info.Env(), [=] { *res = cuda::make_resident_decoder(w, b); },
      [res](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("_native", Napi::External<DecoderHolder>::New(env, new DecoderHolder(*res),
                                                             [](Napi::Env, DecoderHolder* h) { delete h; }));
        o.Set("numLatents", double((*res)->M));
        o.Set("dOut", double((*res)->D));
        o.Set("hasBDec", (*res)->b != nullptr);
        return o;
      });
}

Napi::Value cuda_decoder_decode(const Napi::CallbackInfo& info) {
  DecoderHolder dec = decoder_arg(info, 0);
  Tensor a = arg_tensor(info, 1, "acts");
  Tensor i = arg_tensor(info, 2, "indices");
  check_sparse_pair(a, i, "acts", "indices");
  expect_indices(i, dec->M, "indices");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [=] { *out = cuda::resident_decode(*dec, a, i); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

Napi::Value cuda_decoder_dispose(const Napi::CallbackInfo& info) {
  Napi::Value v = info[0];
  if (v.IsObject()) {
    Napi::Value ext = v.As<Napi::Object>().Get("_native");
    if (ext.IsExternal()) ext.As<Napi::External<DecoderHolder>>().Data()->reset();
  }
  return info.Env().Undefined();
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "cudaDecode", cuda_decode, Accepts::AnyDeviceTensors, Audience::Tests);
  export_fn(env, exports, "cudaDecoderCreate", cuda_decoder_create, Accepts::AnyDeviceTensors, Audience::Tests);
  export_fn(env, exports, "cudaDecoderDecode", cuda_decoder_decode, Accepts::AnyDeviceTensors, Audience::Tests);
  export_fn(env, exports, "cudaDecoderDispose", cuda_decoder_dispose, Accepts::AnyDeviceTensors, Audience::Tests);
}

}  // namespace
SPX_REGISTER(cuda_sae_decode, init);
}  // namespace sparsify
