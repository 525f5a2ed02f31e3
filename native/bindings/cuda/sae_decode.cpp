// N-API bindings (CUDA build only): The sparse decoder on the device (CPU twin: saeDecode in native/bindings/cpu/sae.cpp): cudaDecode and the
// resident decoder (cudaDecoderCreate -> CudaDecoder).
// GPU failures reject with DeviceError (codes: ERR_SPARSIFY_CUDA_OOM, _STICKY, _UNAVAILABLE, ERR_SPARSIFY_DEVICE).
#include <cuda_runtime_api.h>

#include <cmath>
#include <functional>
#include <memory>

#include "bindings/cuda/cuda_binding_util.h"
#include "bindings/cuda/resident_object.h"
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

// ---- resident decoder: cudaDecoderCreate(wDec, bDec?) -> Promise<CudaDecoder> (numLatents, dOut, hasBDec);
// decoder.decode(acts, indices) -> Promise<[N,D] f32>; decoder.dispose().
struct DecoderTraits {
  using Value = cuda::ResidentDecoder;
  static constexpr const char* kClass = "CudaDecoder";
  static constexpr const char* kFactory = "cudaDecoderCreate";
  static constexpr const char* kWhat = "the CUDA decoder";
  static constexpr napi_type_tag kTag = {0x71d4a0c38e5f2b96ULL, 0x4e2b9d67c1a3f850ULL};
};
using CudaDecoder = ResidentObject<DecoderTraits>;

Napi::Value cuda_decoder_create(const Napi::CallbackInfo& info) {
  Tensor w = arg_tensor(info, 0, "wDec");
  Tensor b = arg_optional_tensor(info, 1, "bDec");
  expect_float(w, "wDec");
  expect_ndim(w, 2, "wDec");
  if (b.defined()) expect_vec(b, w.dim(1), "bDec");
  auto res = std::make_shared<CudaDecoder::Holder>();
  return run_async(
      info.Env(), [=] { *res = cuda::make_resident_decoder(w, b); },
      [res](Napi::Env env) -> Napi::Value {
        Napi::Object o = CudaDecoder::New(env, *res);
        o.Set("numLatents", double((*res)->M));
        o.Set("dOut", double((*res)->D));
        o.Set("hasBDec", (*res)->b != nullptr);
        return o;
      });
}

Napi::Value cuda_decoder_decode(const Napi::CallbackInfo& info) {
  CudaDecoder::Holder dec = CudaDecoder::Of(info);
  Tensor a = arg_tensor(info, 0, "acts");
  Tensor i = arg_tensor(info, 1, "indices");
  check_sparse_pair(a, i, "acts", "indices");
  expect_indices(i, dec->M, "indices");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [=] { *out = cuda::resident_decode(*dec, a, i); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "cudaDecode", cuda_decode, Accepts::AnyDeviceTensors, Audience::Tests);
  CudaDecoder::Register(env, {CudaDecoder::InstanceMethod<&CudaDecoder::Call<cuda_decoder_decode>>("decode")});
  export_fn(env, exports, "cudaDecoderCreate", cuda_decoder_create, Accepts::AnyDeviceTensors, Audience::Tests);
}

}  // namespace
SPX_REGISTER(cuda_sae_decode, init);
}  // namespace sparsify
