// N-API bindings (CUDA build only): The fused TopK / GroupMax / AuxK encoder on the device (CPU twin: saeEncode in
// native/bindings/cpu/sae.cpp): cudaTopkEncode and the resident encoder (cudaEncoderCreate -> CudaEncoder).
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
#include "core/coder_spec.h"
#include "core/napi_util.h"

namespace sparsify {
namespace {
using namespace cuda_binding;

// Encode options shared by cudaTopkEncode and CudaEncoder.encode, validated for M latents and N rows.
cuda::EncodeOptions read_encode_options(Napi::Object opts, int64_t N, int64_t M) {
  cuda::EncodeOptions o;
  o.k = opt_int(opts, "k", 0);
  std::string act = opt_string(opts, "activation", "topk");
  if (act != "topk" && act != "groupmax")
    fail(ErrorKind::Value, "activation must be 'topk' or 'groupmax', got '" + act + "'");
  o.groupmax = act == "groupmax";
  o.dead_mask = opt_tensor(opts, "deadMask");
  o.k_aux = opt_int(opts, "kAux", 0);
  o.force_unfused = opt_bool(opts, "forceUnfused", false);
  o.pre_acts = opt_bool(opts, "preActs", false);
  if (M >= (int64_t(1) << 31) || N * std::max<int64_t>(o.k, 1) >= (int64_t(1) << 31))
    fail(ErrorKind::Value, "CUDA encode: num_latents and N*k must be < 2^31");
  check_coder_spec(M, o.k, o.groupmax, false);
  if (o.k > 8192) fail(ErrorKind::Value, "CUDA encode supports k <= 8192, got " + std::to_string(o.k));
  if (o.dead_mask.defined()) {
    expect_dtype(o.dead_mask, DType::I32, "deadMask");
    expect_shape(o.dead_mask, {M}, "deadMask");
    if (o.k_aux < 0 || o.k_aux > 8192) fail(ErrorKind::Value, "kAux must be in [0, 8192]");
  }
  return o;
}

Napi::Value wrap_encode_result(Napi::Env env, const cuda::EncodeResult& r) {
  Napi::Value v = wrap_all(env, {{"acts", r.acts}, {"indices", r.indices}, {"auxActs", r.aux_acts}, {"auxIndices", r.aux_indices},
                                 {"preActs", r.pre_acts}});
  v.As<Napi::Object>().Set("fused", r.fused);
  return v;
}

// cudaTopkEncode(x [N,D], wEnc [M,D], bEnc [M], {k, activation:'topk'|'groupmax', bDec?, deadMask?,
//   kAux?, computeDtype?, forceUnfused?, preActs?}) -> Promise<{acts, indices, auxActs?, auxIndices?, preActs?, fused}>
Napi::Value cuda_topk_encode(const Napi::CallbackInfo& info) {
  Tensor x = arg_tensor(info, 0, "x");
  Tensor w = arg_tensor(info, 1, "wEnc");
  Tensor b = arg_tensor(info, 2, "bEnc");
  Napi::Object opts = opts_at(info, 3);
  expect_float(x, "x");
  expect_ndim(x, 2, "x");
  expect_float(w, "wEnc");
  expect_ndim(w, 2, "wEnc");
  const int64_t N = x.dim(0), D = x.dim(1), M = w.dim(0);
  if (w.dim(1) != D) fail(ErrorKind::Shape, "wEnc is " + shape_str(w.shape) + " but x is " + shape_str(x.shape));
  expect_vec(b, M, "bEnc");
  cuda::EncodeOptions o = read_encode_options(opts, N, M);
  o.b_dec = opt_tensor(opts, "bDec");
  o.compute = compute_dtype(opts);
  if (o.b_dec.defined()) expect_vec(o.b_dec, D, "bDec");
  auto res = std::make_shared<cuda::EncodeResult>();
  return run_async(
      info.Env(), [=] { *res = cuda::topk_encode(x, w, b, o); },
      [res](Napi::Env env) -> Napi::Value { return wrap_encode_result(env, *res); });
}

// ---- resident encoder: cudaEncoderCreate(wEnc, bEnc, bDec?, {computeDtype?}) -> Promise<CudaEncoder>
//   (the object has numLatents, dIn, computeDtype, hasBDec);
// encoder.encode(x, {k, activation?, deadMask?, kAux?, preActs?}) -> Promise<like cudaTopkEncode>;
// encoder.dispose() frees the device memory now (GC frees it otherwise).
struct EncoderTraits {
  using Value = cuda::ResidentEncoder;
  static constexpr const char* kClass = "CudaEncoder";
  static constexpr const char* kFactory = "cudaEncoderCreate";
  static constexpr const char* kWhat = "the CUDA encoder";
  static constexpr napi_type_tag kTag = {0x3c91e5a7d20b4f68ULL, 0x9b17f4c2a6e8d035ULL};
};
using CudaEncoder = ResidentObject<EncoderTraits>;

Napi::Value cuda_encoder_create(const Napi::CallbackInfo& info) {
  Tensor w = arg_tensor(info, 0, "wEnc");
  Tensor b = arg_tensor(info, 1, "bEnc");
  Tensor bd = arg_optional_tensor(info, 2, "bDec");
  DType compute = compute_dtype(opts_at(info, 3));
  expect_float(w, "wEnc");
  expect_ndim(w, 2, "wEnc");
  expect_vec(b, w.dim(0), "bEnc");
  if (bd.defined()) expect_vec(bd, w.dim(1), "bDec");
  auto res = std::make_shared<CudaEncoder::Holder>();
  return run_async(
      info.Env(), [=] { *res = cuda::make_resident_encoder(w, b, bd, compute); },
      [res](Napi::Env env) -> Napi::Value {
        Napi::Object o = CudaEncoder::New(env, *res);
        o.Set("numLatents", double((*res)->M));
        o.Set("dIn", double((*res)->D));
        o.Set("computeDtype", (*res)->compute == DType::F16 ? "float16" : "bfloat16");
        o.Set("hasBDec", (*res)->b_dec != nullptr);
        return o;
      });
}

Napi::Value cuda_encoder_encode(const Napi::CallbackInfo& info) {
  CudaEncoder::Holder enc = CudaEncoder::Of(info);
  Tensor x = arg_tensor(info, 0, "x");
  expect_float(x, "x");
  expect_ndim(x, 2, "x");
  if (x.dim(1) != enc->D)
    fail(ErrorKind::Shape, "x is " + shape_str(x.shape) + " but the encoder expects " + std::to_string(enc->D) + " inputs");
  cuda::EncodeOptions o = read_encode_options(opts_at(info, 1), x.dim(0), enc->M);
  auto res = std::make_shared<cuda::EncodeResult>();
  return run_async(
      info.Env(), [=] { *res = cuda::resident_encode(*enc, x, o); },
      [res](Napi::Env env) -> Napi::Value { return wrap_encode_result(env, *res); });
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "cudaTopkEncode", cuda_topk_encode, Accepts::AnyDeviceTensors, Audience::Tests);
  CudaEncoder::Register(env, {CudaEncoder::InstanceMethod<&CudaEncoder::Call<cuda_encoder_encode>>("encode")});
  export_fn(env, exports, "cudaEncoderCreate", cuda_encoder_create, Accepts::AnyDeviceTensors);
}

}  // namespace
SPX_REGISTER(cuda_sae_encode, init);
}  // namespace sparsify
