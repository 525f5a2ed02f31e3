// N-API bindings of the CUDA backend (compiled only in the CUDA variant, SPARSIFY_HAVE_CUDA):
//   cudaProbe() -> {devices, name?, computeCapability?, driverVersion?, runtimeVersion, ...error?}
//   cuda*(...)  -> Promise: host tensors in, host tensors out (see kernels.h for each op's math).
// GPU failures reject with DeviceError whose `code` is ERR_SPARSIFY_CUDA_OOM,
// ERR_SPARSIFY_CUDA_STICKY, ERR_SPARSIFY_CUDA_UNAVAILABLE or ERR_SPARSIFY_DEVICE.
#include <cuda_runtime_api.h>

#include <cmath>
#include <functional>
#include <memory>

#include "cuda_check.h"
#include "cuda_context.h"
#include "kernels.h"
#include "napi_util.h"

namespace sparsify {
namespace {

using TensorList = std::vector<std::pair<const char*, Tensor>>;
Napi::Value wrap_all(Napi::Env env, const TensorList& items) {
  Napi::Object o = Napi::Object::New(env);
  for (auto& [name, t] : items)
    if (t.defined()) o.Set(name, TensorHandle::Wrap(env, t));
  return o;
}

DType compute_dtype(Napi::Object opts) {
  std::string c = opt_string(opts, "computeDtype", "bfloat16");
  if (c == "bfloat16") return DType::BF16;
  if (c == "float16") return DType::F16;
  fail(ErrorKind::DType, "computeDtype must be 'bfloat16' or 'float16', got '" + c + "'");
}

Napi::Object opts_at(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && info[i].IsObject() ? info[i].As<Napi::Object>() : Napi::Object::New(info.Env());
}

void expect_rows(const Tensor& t, int64_t rows, const char* name, const char* what) {
  if (t.dim(0) != rows)
    fail(ErrorKind::Shape, std::string(name) + " is " + shape_str(t.shape) + " but must have " + std::to_string(rows) +
                               " rows (" + what + ")");
}

// ---------------------------------------------------------------- probe
Napi::Value cuda_probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::ProbeResult r = cuda::probe();
  Napi::Object o = Napi::Object::New(env);
  o.Set("devices", r.devices);
  o.Set("runtimeVersion", r.runtime_version);
  if (r.driver_version > 0) o.Set("driverVersion", r.driver_version);
  if (!r.name.empty()) {
    o.Set("name", r.name);
    o.Set("computeCapability", std::to_string(r.cc_major) + "." + std::to_string(r.cc_minor));
    o.Set("multiprocessors", r.sm_count);
    o.Set("totalMemory", double(r.total_memory));
  }
  if (!r.error.empty()) o.Set("error", r.error);
  return o;
}

// ---------------------------------------------------------------- GEMM
// cudaMatmul(a [M,K], b, {bTrans, bias?, computeDtype?}) -> Promise<[M,N] f32>
Napi::Value cuda_matmul(const Napi::CallbackInfo& info) {
  Tensor a = arg_tensor(info, 0, "a");
  Tensor b = arg_tensor(info, 1, "b");
  Napi::Object opts = opts_at(info, 2);
  bool b_trans = opt_bool(opts, "bTrans", false);
  Tensor bias = opt_tensor(opts, "bias");
  DType compute = compute_dtype(opts);
  expect_float(a, "a");
  expect_ndim(a, 2, "a");
  expect_float(b, "b");
  expect_ndim(b, 2, "b");
  int64_t K = a.dim(1), N = b_trans ? b.dim(0) : b.dim(1), bk = b_trans ? b.dim(1) : b.dim(0);
  if (bk != K)
    fail(ErrorKind::Shape, "cudaMatmul: a is " + shape_str(a.shape) + " but b is " + shape_str(b.shape) +
                               (b_trans ? " (transposed)" : ""));
  if (bias.defined()) {
    expect_float(bias, "bias");
    expect_shape(bias, {N}, "bias");
  }
  // Review fix: grid limits of gemm.cu (gridDim.y = ceil(M/128), transpose grid.y = ceil(K/32),
  // both <= 65535) checked here instead of failing the launch.
  if ((a.dim(0) + 127) / 128 > 65535 || (K + 31) / 32 > 65535)
    fail(ErrorKind::Value, "cudaMatmul: a has " + std::to_string(a.dim(0)) + " rows and K = " + std::to_string(K) +
                               "; this kernel supports up to 8388480 rows and K <= 2097120");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [=] { *out = cuda::matmul(a, b, b_trans, bias, compute); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

// ---------------------------------------------------------------- benchmarks
// cudaBench(kind, {m,n,k,bytes,iters}) -> Promise<number ms>
Napi::Value cuda_bench(const Napi::CallbackInfo& info) {
  std::string kind = arg_string(info, 0, "kind");
  Napi::Object o = opts_at(info, 1);
  int64_t m = opt_int(o, "m", 0), n = opt_int(o, "n", 0), k = opt_int(o, "k", 0), d = opt_int(o, "d", 0);
  int64_t bytes = opt_int(o, "bytes", 0);
  int iters = int(opt_int(o, "iters", 10));
  if (kind != "gemm" && kind != "copy" && kind != "encode")
    fail(ErrorKind::Value, "cudaBench: kind must be 'gemm', 'copy' or 'encode', got '" + kind + "'");
  if (m < 0 || n < 0 || k < 0 || d < 0 || bytes < 0 || iters < 1) fail(ErrorKind::Value, "cudaBench: sizes must be >= 0");
  // Review fix: empty sizes gave an empty launch grid (a device error), k > m an invalid top-k.
  if (kind == "gemm" && (m < 1 || n < 1 || k < 1 || (m + 127) / 128 > 65535))
    fail(ErrorKind::Value, "cudaBench gemm: m, n, k must be >= 1 (m <= 8388480)");
  if (kind == "encode" && (n < 1 || d < 1 || m < 1 || k < 1 || k > m || k > 8192 || m >= (int64_t(1) << 31) ||
                           n * k >= (int64_t(1) << 31)))
    fail(ErrorKind::Value, "cudaBench encode: needs n, d, m >= 1 and 1 <= k <= min(m, 8192)");
  if (kind == "copy" && bytes < 1) fail(ErrorKind::Value, "cudaBench copy: bytes must be >= 1");
  auto ms = std::make_shared<double>(0);
  return run_async(
      info.Env(),
      [=] {
        if (kind == "gemm") *ms = cuda::bench_gemm_ms(m, n, k, iters);
        else if (kind == "copy") *ms = cuda::bench_copy_ms(bytes, iters);
        else *ms = cuda::bench_encode_ms(n, d, m, k, iters);
      },
      [ms](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *ms); });
}

// ---------------------------------------------------------------- SAE ops
// Checks that every index is in [0, M) (device kernels index W rows with them).
void expect_indices(const Tensor& idx, int64_t M, const char* name) { expect_indices_below(idx, M, name, "a latent index"); }

void expect_vec(const Tensor& t, int64_t n, const char* name) {
  expect_float(t, name);
  expect_shape(t, {n}, name);
}

// Encode options shared by cudaTopkEncode and cudaEncoderEncode, validated for M latents and N rows.
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
  if (M >= (int64_t(1) << 31) || N * std::max<int64_t>(o.k, 1) >= (int64_t(1) << 31))
    fail(ErrorKind::Value, "CUDA encode: num_latents and N*k must be < 2^31");
  if (o.k < 1 || o.k > M) fail(ErrorKind::Value, "k must be in [1, num_latents=" + std::to_string(M) + "], got " + std::to_string(o.k));
  if (o.k > 8192) fail(ErrorKind::Value, "CUDA encode supports k <= 8192, got " + std::to_string(o.k));
  if (o.groupmax && M % o.k != 0)
    fail(ErrorKind::Value, "groupmax needs num_latents (" + std::to_string(M) + ") divisible by k (" + std::to_string(o.k) + ")");
  if (o.dead_mask.defined()) {
    expect_dtype(o.dead_mask, DType::I32, "deadMask");
    expect_shape(o.dead_mask, {M}, "deadMask");
    if (o.k_aux < 0 || o.k_aux > 8192) fail(ErrorKind::Value, "kAux must be in [0, 8192]");
  }
  return o;
}

Napi::Value wrap_encode_result(Napi::Env env, const cuda::EncodeResult& r) {
  Napi::Value v = wrap_all(env, {{"acts", r.acts}, {"indices", r.indices}, {"auxActs", r.aux_acts}, {"auxIndices", r.aux_indices}});
  v.As<Napi::Object>().Set("fused", r.fused);
  return v;
}

// cudaTopkEncode(x [N,D], wEnc [M,D], bEnc [M], {k, activation:'topk'|'groupmax', bDec?, deadMask?,
//   kAux?, computeDtype?, forceUnfused?}) -> Promise<{acts, indices, auxActs?, auxIndices?, fused}>
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

// ---- resident encoder: cudaEncoderCreate(wEnc, bEnc, bDec?, {computeDtype?}) -> Promise<encoder>,
// cudaEncoderEncode(encoder, x, {k, activation?, deadMask?, kAux?}) -> Promise<like cudaTopkEncode>,
// cudaEncoderDispose(encoder) frees the device memory now (GC frees it otherwise).
using EncoderHolder = std::shared_ptr<cuda::ResidentEncoder>;

EncoderHolder& encoder_arg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Value v = info[i];
  if (!v.IsObject()) fail(ErrorKind::Value, "argument 'encoder' must be an object from cudaEncoderCreate");
  Napi::Value ext = v.As<Napi::Object>().Get("_native");
  if (!ext.IsExternal()) fail(ErrorKind::Value, "argument 'encoder' must be an object from cudaEncoderCreate");
  EncoderHolder* h = ext.As<Napi::External<EncoderHolder>>().Data();
  if (!*h) fail(ErrorKind::Disposed, "the CUDA encoder was disposed");
  return *h;
}

Napi::Value cuda_encoder_create(const Napi::CallbackInfo& info) {
  Tensor w = arg_tensor(info, 0, "wEnc");
  Tensor b = arg_tensor(info, 1, "bEnc");
  Tensor bd = arg_optional_tensor(info, 2, "bDec");
  DType compute = compute_dtype(opts_at(info, 3));
  expect_float(w, "wEnc");
  expect_ndim(w, 2, "wEnc");
  expect_vec(b, w.dim(0), "bEnc");
  if (bd.defined()) expect_vec(bd, w.dim(1), "bDec");
  auto res = std::make_shared<EncoderHolder>();
  return run_async(
      info.Env(), [=] { *res = cuda::make_resident_encoder(w, b, bd, compute); },
      [res](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("_native", Napi::External<EncoderHolder>::New(env, new EncoderHolder(*res),
                                                             [](Napi::Env, EncoderHolder* h) { delete h; }));
        o.Set("numLatents", double((*res)->M));
        o.Set("dIn", double((*res)->D));
        o.Set("computeDtype", (*res)->compute == DType::F16 ? "float16" : "bfloat16");
        o.Set("hasBDec", (*res)->b_dec != nullptr);
        return o;
      });
}

Napi::Value cuda_encoder_encode(const Napi::CallbackInfo& info) {
  EncoderHolder enc = encoder_arg(info, 0);
  Tensor x = arg_tensor(info, 1, "x");
  expect_float(x, "x");
  expect_ndim(x, 2, "x");
  if (x.dim(1) != enc->D)
    fail(ErrorKind::Shape, "x is " + shape_str(x.shape) + " but the encoder expects " + std::to_string(enc->D) + " inputs");
  cuda::EncodeOptions o = read_encode_options(opts_at(info, 2), x.dim(0), enc->M);
  auto res = std::make_shared<cuda::EncodeResult>();
  return run_async(
      info.Env(), [=] { *res = cuda::resident_encode(*enc, x, o); },
      [res](Napi::Env env) -> Napi::Value { return wrap_encode_result(env, *res); });
}

Napi::Value cuda_encoder_dispose(const Napi::CallbackInfo& info) {
  Napi::Value v = info[0];
  if (v.IsObject()) {
    Napi::Value ext = v.As<Napi::Object>().Get("_native");
    if (ext.IsExternal()) ext.As<Napi::External<EncoderHolder>>().Data()->reset();  // pending jobs keep their copy
  }
  return info.Env().Undefined();
}

void check_sparse_pair(const Tensor& acts, const Tensor& idx, const char* an, const char* in) {
  expect_float(acts, an);
  expect_ndim(acts, 2, an);
  expect_shape(idx, acts.shape, in);
  if (acts.numel() >= (int64_t(1) << 31)) fail(ErrorKind::Value, std::string(an) + " has >= 2^31 elements");
}

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

// ---- resident training state (sae_train.cu) ----
// cudaSaeCreate({wEnc, bEnc, wDec, bDec, wSkip?}, {k, activation?, transcode?, normalizeDecoder?, computeDtype?}) -> Promise<sae>
//   (wSkip [d_in, d_in]: skip_connection, a fifth parameter)
// cudaSaeForwardBackward(sae, x, {y?, deadMask?, auxkAlpha?, lossScale?, auxkIncludesBDec?, k?, activation?,
//   normalizeDecoder?, totalVariance?, backward? = true, outputs? = false, multiTopk? = false, didFire?, rowBegin?, rowEnd?})
//   -> Promise<{fvu, auxkLoss, multiTopkFvu, kAux, numDead, totalVariance, indices, acts?, saeOut?}>
//   (gradients accumulate on the device; with multiTopk indices / acts / saeOut are the 4k selection's)
// cudaSaeEncode(sae, x, {k?, activation?}) -> Promise<{acts, indices}>;  cudaSaeDecode(sae, acts, indices) -> Promise<[N,D]>
// cudaSaeApply(sae, {optimizer: 'adam'|'signum'|'muon', lr, beta1?, beta2?, eps?, step?, c?, beta?, project?,
//   muon: vectorLr (the Adam half's lr), momentum?, nesterov?, weightDecay?, nsSteps?}) -> Promise<undefined>
// cudaSaeRead(sae, {evalBeta?, grads?}) -> Promise<{wEnc, bEnc, wDec, bDec, wSkip?, gradWEnc?, ...}>;  cudaSaeDispose(sae)
// cudaSaeReadState(sae) -> Promise<{m?, v?, z?}> (arrays of 4 in wEnc, bEnc, wDec, bDec order; 5 with wSkip)
// cudaSaeLoadState(sae, {params?: {wEnc?, ..., wSkip?}, m?, v?, z?, resetOptimizer?, zeroGrads?}) -> Promise<undefined>
//   (slot arrays of 4, or 5 for a state with wSkip)
// cudaSaeLerp(sae, weight) -> Promise<undefined>  (schedule-free eval/train: p = lerp(p, z, weight))
using SaeHolder = std::shared_ptr<cuda::ResidentSae>;

SaeHolder& sae_arg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Value v = info[i];
  Napi::Value ext = v.IsObject() ? v.As<Napi::Object>().Get("_native") : v;
  if (!ext.IsExternal()) fail(ErrorKind::Value, "argument 'sae' must be an object from cudaSaeCreate");
  SaeHolder* h = ext.As<Napi::External<SaeHolder>>().Data();
  if (!*h) fail(ErrorKind::Disposed, "the CUDA sparse coder state was disposed");
  return *h;
}

Napi::Value cuda_sae_create(const Napi::CallbackInfo& info) {
  Napi::Object params = arg_object(info, 0, "params");
  Tensor we = opt_tensor(params, "wEnc"), be = opt_tensor(params, "bEnc"), wd = opt_tensor(params, "wDec"),
         bd = opt_tensor(params, "bDec");
  Napi::Object o = opts_at(info, 1);
  for (auto [t, n] : {std::pair<Tensor*, const char*>{&we, "wEnc"}, {&be, "bEnc"}, {&wd, "wDec"}, {&bd, "bDec"}}) {
    if (!t->defined()) fail(ErrorKind::Value, std::string("params.") + n + " is required");
    expect_float(*t, n);
  }
  expect_ndim(we, 2, "wEnc");
  const int64_t M = we.dim(0), D = we.dim(1);
  expect_vec(be, M, "bEnc");
  expect_shape(wd, {M, D}, "wDec");
  expect_vec(bd, D, "bDec");
  Tensor ws = opt_tensor(params, "wSkip");
  if (ws.defined()) {
    expect_float(ws, "wSkip");
    expect_shape(ws, {D, D}, "wSkip");
  }
  cuda::SaeConfig cfg;
  cfg.k = opt_int(o, "k", 0);
  std::string act = opt_string(o, "activation", "topk");
  if (act != "topk" && act != "groupmax") fail(ErrorKind::Value, "activation must be 'topk' or 'groupmax', got '" + act + "'");
  cfg.groupmax = act == "groupmax";
  cfg.transcode = opt_bool(o, "transcode", false);
  cfg.normalize_decoder = opt_bool(o, "normalizeDecoder", true);
  cfg.compute = compute_dtype(o);
  if (cfg.k < 1 || cfg.k > M || cfg.k > 8192) fail(ErrorKind::Value, "k must be in [1, min(num_latents, 8192)], got " + std::to_string(cfg.k));
  if (cfg.groupmax && M % cfg.k) fail(ErrorKind::Value, "groupmax needs num_latents divisible by k");
  if (M >= (int64_t(1) << 31)) fail(ErrorKind::Value, "num_latents must be < 2^31");
  auto res = std::make_shared<SaeHolder>();
  return run_async(
      info.Env(), [=] { *res = cuda::make_resident_sae(we, be, wd, bd, ws, cfg); },
      [res](Napi::Env env) -> Napi::Value {
        Napi::Object obj = Napi::Object::New(env);
        obj.Set("_native", Napi::External<SaeHolder>::New(env, new SaeHolder(*res), [](Napi::Env, SaeHolder* h) { delete h; }));
        obj.Set("numLatents", double(cuda::sae_num_latents(**res)));
        obj.Set("dIn", double(cuda::sae_d_in(**res)));
        return obj;
      });
}

// k / activation / normalizeDecoder of this call (default: the values given to cudaSaeCreate).
cuda::SaeCall read_sae_call(Napi::Object o, const cuda::ResidentSae& sae) {
  const cuda::SaeConfig& cfg = cuda::sae_config(sae);
  const int64_t M = cuda::sae_num_latents(sae);
  cuda::SaeCall c;
  c.k = opt_int(o, "k", cfg.k);
  std::string act = opt_string(o, "activation", cfg.groupmax ? "groupmax" : "topk");
  if (act != "topk" && act != "groupmax") fail(ErrorKind::Value, "activation must be 'topk' or 'groupmax', got '" + act + "'");
  c.groupmax = act == "groupmax";
  c.normalize_decoder = opt_bool(o, "normalizeDecoder", cfg.normalize_decoder);
  if (c.k < 1 || c.k > M || c.k > 8192)
    fail(ErrorKind::Value, "k must be in [1, min(num_latents=" + std::to_string(M) + ", 8192)] on the CUDA backend, got " + std::to_string(c.k));
  if (c.groupmax && M % c.k)
    fail(ErrorKind::Value, "groupmax needs num_latents (" + std::to_string(M) + ") divisible by k (" + std::to_string(c.k) + ")");
  return c;
}

void check_sae_input(const Tensor& x, int64_t D, const char* name) {
  expect_float(x, name);
  expect_ndim(x, 2, name);
  if (x.dim(1) != D) fail(ErrorKind::Shape, std::string(name) + " is " + shape_str(x.shape) + " but the sparse coder has d_in " + std::to_string(D));
  if (x.dim(0) < 1) fail(ErrorKind::Shape, std::string(name) + " has no rows");
  if (x.dim(0) * std::max<int64_t>(D, 1) >= (int64_t(1) << 40)) fail(ErrorKind::Value, std::string(name) + " is too large");
}

Napi::Value cuda_sae_forward_backward(const Napi::CallbackInfo& info) {
  SaeHolder sae = sae_arg(info, 0);
  Tensor x = arg_tensor(info, 1, "x");
  Napi::Object o = opts_at(info, 2);
  Tensor y = opt_tensor(o, "y"), dm = opt_tensor(o, "deadMask"), fired = opt_tensor(o, "didFire");
  cuda::SaeCall call = read_sae_call(o, *sae);
  call.auxk_alpha = opt_number(o, "auxkAlpha", 1.0 / 32);
  call.loss_scale = opt_number(o, "lossScale", 1.0);
  call.auxk_includes_b_dec = opt_bool(o, "auxkIncludesBDec", false);  // fixed AuxK (#134), as the CPU saeStep
  call.total_variance = opt_number(o, "totalVariance", -1);
  call.backward = opt_bool(o, "backward", true);
  call.outputs = opt_bool(o, "outputs", false);
  call.multi_topk = opt_bool(o, "multiTopk", false);
  const int64_t M = cuda::sae_num_latents(*sae), D = cuda::sae_d_in(*sae);
  if (call.multi_topk && (4 * call.k > M || 4 * call.k > 8192))
    fail(ErrorKind::Value, "multi_topk needs 4*k (" + std::to_string(4 * call.k) + ") <= min(num_latents=" + std::to_string(M) +
                               ", 8192) on the CUDA backend");
  if (y.defined()) {
    expect_float(y, "y");
    expect_shape(y, x.shape, "y");
  }
  // Micro-batches: rows [rowBegin, rowEnd) of x (and y) as views, so no slice crosses into JS.
  if (o.Has("rowBegin") || o.Has("rowEnd")) {
    expect_ndim(x, 2, "x");
    const int64_t b = opt_int(o, "rowBegin", 0), e = opt_int(o, "rowEnd", x.dim(0));
    if (b < 0 || e <= b || e > x.dim(0))
      fail(ErrorKind::Value, "rows [" + std::to_string(b) + ", " + std::to_string(e) + ") are outside x " + shape_str(x.shape));
    x = x.rows(b, e);
    if (y.defined()) y = y.rows(b, e);
  }
  check_sae_input(x, D, "x");
  int64_t num_dead = 0;
  if (dm.defined()) {
    expect_dtype(dm, DType::I32, "deadMask");
    expect_shape(dm, {M}, "deadMask");
    const Tensor host = host_copy(dm);  // a device mask is copied back to be counted
    const int32_t* p = host.data<int32_t>();
    for (int64_t m = 0; m < M; ++m) num_dead += p[m] != 0;
  }
  // Review fix: the CSR slots, row_topk rows and iota are int32, so N·k and N·k_aux must stay
  // below 2^31; and AuxK's row_topk keeps k_aux = min(d/2, num_dead) in shared memory (<= 8192).
  // AuxK runs whenever some latent is dead (sae_train.cu), as the CPU saeStep.
  const int64_t k_aux = std::min<int64_t>(D / 2, num_dead);
  if (x.dim(0) * std::max(call.multi_topk ? 4 * call.k : call.k, k_aux) >= (int64_t(1) << 31))
    fail(ErrorKind::Value, "x has " + std::to_string(x.dim(0)) + " rows: N*k (N*4k with multi_topk) and N*k_aux must be < 2^31 on CUDA");
  if (k_aux > 8192)
    fail(ErrorKind::Value, "AuxK would select k_aux = min(d_in/2, num_dead) = " + std::to_string(k_aux) +
                               " latents per row; the CUDA kernels support at most 8192");
  if (fired.defined()) {
    expect_dtype(fired, DType::I32, "didFire");
    expect_shape(fired, {M}, "didFire");
    // Written on the host after the step (the dead-latent counters live on the host).
    if (fired.device() != Device::CPU) fail(ErrorKind::Device, "didFire must be a host (cpu) tensor");
  }
  if (!(call.auxk_alpha >= 0) || !std::isfinite(call.auxk_alpha)) fail(ErrorKind::Value, "auxkAlpha must be a finite number >= 0");
  if (!(call.loss_scale > 0) || !std::isfinite(call.loss_scale)) fail(ErrorKind::Value, "lossScale must be a finite number > 0");
  if (!std::isfinite(call.total_variance)) fail(ErrorKind::Value, "totalVariance must be finite (or <= 0 for this batch's)");
  auto res = std::make_shared<cuda::SaeStepResult>();
  return run_async(
      info.Env(), [=] { *res = cuda::sae_forward_backward(*sae, x, y, dm, call, fired); },
      [res](Napi::Env env) -> Napi::Value {
        Napi::Object obj = Napi::Object::New(env);
        obj.Set("fvu", res->fvu);
        obj.Set("auxkLoss", res->auxk_loss);
        obj.Set("multiTopkFvu", res->multi_topk_fvu);
        obj.Set("kAux", double(res->k_aux));
        obj.Set("numDead", double(res->num_dead));
        obj.Set("totalVariance", res->total_variance);
        obj.Set("indices", TensorHandle::Wrap(env, res->indices));
        if (res->acts.defined()) obj.Set("acts", TensorHandle::Wrap(env, res->acts));
        if (res->sae_out.defined()) obj.Set("saeOut", TensorHandle::Wrap(env, res->sae_out));
        return obj;
      });
}

Napi::Value cuda_sae_encode(const Napi::CallbackInfo& info) {
  SaeHolder sae = sae_arg(info, 0);
  Tensor x = arg_tensor(info, 1, "x");
  cuda::SaeCall call = read_sae_call(opts_at(info, 2), *sae);
  check_sae_input(x, cuda::sae_d_in(*sae), "x");
  if (int64_t(x.dim(0)) * call.k >= (int64_t(1) << 31)) fail(ErrorKind::Value, "x rows * k must be < 2^31");
  auto res = std::make_shared<cuda::SaeCodes>();
  return run_async(
      info.Env(), [=] { *res = cuda::sae_encode(*sae, x, call.k, call.groupmax); },
      [res](Napi::Env env) -> Napi::Value { return wrap_all(env, {{"acts", res->acts}, {"indices", res->indices}}); });
}

Napi::Value cuda_sae_decode(const Napi::CallbackInfo& info) {
  SaeHolder sae = sae_arg(info, 0);
  Tensor a = arg_tensor(info, 1, "acts");
  Tensor i = arg_tensor(info, 2, "indices");
  check_sparse_pair(a, i, "acts", "indices");
  expect_indices(i, cuda::sae_num_latents(*sae), "indices");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [=] { *out = cuda::sae_decode(*sae, a, i); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

Napi::Value cuda_sae_apply(const Napi::CallbackInfo& info) {
  // The options are checked before the state argument, so bad options are typed errors even on a
  // machine without a device (where no state can exist).
  Napi::Object o = opts_at(info, 1);
  cuda::SaeOptim so;
  std::string kind = opt_string(o, "optimizer", "");
  if (kind != "adam" && kind != "signum" && kind != "muon")
    fail(ErrorKind::Value, "optimizer must be 'adam', 'signum' or 'muon', got '" + kind + "'");
  so.signum = kind == "signum";
  so.muon = kind == "muon";
  so.lr = opt_number(o, "lr", -1);
  so.beta1 = opt_number(o, "beta1", 0.9);
  so.beta2 = opt_number(o, "beta2", 0.999);
  so.eps = opt_number(o, "eps", 1e-8);
  so.step = opt_int(o, "step", 1);
  so.c = opt_number(o, "c", -1);
  so.beta = opt_number(o, "beta", 0.95);
  if (o.Has("project") && !o.Get("project").IsUndefined()) so.project = opt_bool(o, "project", false) ? 1 : 0;
  if (so.signum) {
    if (!(so.lr > 0)) fail(ErrorKind::Value, "signum: lr must be > 0");
    if (!(so.c >= 0 && so.c <= 1)) fail(ErrorKind::Value, "signum: c (weight / weight_sum) must be in [0, 1]");
    if (!(so.beta > 0 && so.beta < 1)) fail(ErrorKind::Value, "signum: beta must be in (0, 1)");
  } else {
    if (so.muon) {
      so.lr_vector = opt_number(o, "vectorLr", -1);
      so.momentum = opt_number(o, "momentum", 0.95);
      so.nesterov = opt_bool(o, "nesterov", true);
      so.weight_decay = opt_number(o, "weightDecay", 0.1);
      const int64_t ns = opt_int(o, "nsSteps", 5);
      if (!(so.lr >= 0 && std::isfinite(so.lr))) fail(ErrorKind::Value, "muon: lr must be a finite number >= 0");
      if (!(so.lr_vector >= 0 && std::isfinite(so.lr_vector))) fail(ErrorKind::Value, "muon: vectorLr (the Adam half's lr) must be a finite number >= 0");
      if (!(so.momentum >= 0 && so.momentum < 1)) fail(ErrorKind::Value, "muon: momentum must be in [0, 1)");
      if (!(so.weight_decay >= 0 && std::isfinite(so.weight_decay))) fail(ErrorKind::Value, "muon: weightDecay must be a finite number >= 0");
      if (ns < 0 || ns > 100) fail(ErrorKind::Value, "muon: nsSteps must be in [0, 100]");
      so.ns_steps = int(ns);
    }
    if (!(so.lr >= 0)) fail(ErrorKind::Value, kind + ": lr must be >= 0");
    if (so.step < 1) fail(ErrorKind::Value, kind + ": step must be >= 1");
    if (!(so.beta1 >= 0 && so.beta1 < 1 && so.beta2 >= 0 && so.beta2 < 1)) fail(ErrorKind::Value, kind + ": betas must be in [0, 1)");
  }
  SaeHolder sae = sae_arg(info, 0);
  return run_async(
      info.Env(), [=] { cuda::sae_apply(*sae, so); },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
}

Napi::Value cuda_sae_read(const Napi::CallbackInfo& info) {
  SaeHolder sae = sae_arg(info, 0);
  Napi::Object o = opts_at(info, 1);
  double eval_beta = opt_number(o, "evalBeta", 0);
  bool with_grads = opt_bool(o, "grads", false);
  if (eval_beta < 0 || eval_beta >= 1) fail(ErrorKind::Value, "evalBeta must be in [0, 1)");
  auto res = std::make_shared<cuda::SaeParams>();
  return run_async(
      info.Env(), [=] { *res = cuda::sae_read(*sae, eval_beta, with_grads); },
      [res](Napi::Env env) -> Napi::Value {
        return wrap_all(env, {{"wEnc", res->w_enc}, {"bEnc", res->b_enc}, {"wDec", res->w_dec}, {"bDec", res->b_dec},
                              {"wSkip", res->w_skip}, {"gradWEnc", res->g_w_enc}, {"gradBEnc", res->g_b_enc},
                              {"gradWDec", res->g_w_dec}, {"gradBDec", res->g_b_dec}, {"gradWSkip", res->g_w_skip}});
      });
}

const char* const kSaeParamNames[cuda::kSaeMaxParams] = {"wEnc", "bEnc", "wDec", "bDec", "wSkip"};

Napi::Value cuda_sae_read_state(const Napi::CallbackInfo& info) {
  SaeHolder sae = sae_arg(info, 0);
  auto res = std::make_shared<cuda::SaeOptState>();
  const uint32_t np = uint32_t(cuda::sae_num_params(*sae));
  return run_async(
      info.Env(), [=] { *res = cuda::sae_read_state(*sae); },
      [res, np](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        auto slot = [&](const char* key, const Tensor (&t)[cuda::kSaeMaxParams]) {
          bool any = false;
          for (uint32_t i = 0; i < np; ++i) any |= t[i].defined();
          if (!any) return;
          Napi::Array a = Napi::Array::New(env, np);
          for (uint32_t i = 0; i < np; ++i) a.Set(i, t[i].defined() ? TensorHandle::Wrap(env, t[i]) : env.Undefined());
          o.Set(key, a);
        };
        slot("m", res->m);
        slot("v", res->v);
        slot("z", res->z);
        return o;
      });
}

Napi::Value cuda_sae_load_state(const Napi::CallbackInfo& info) {
  SaeHolder sae = sae_arg(info, 0);
  Napi::Object o = arg_object(info, 1, "state");
  const int64_t M = cuda::sae_num_latents(*sae), D = cuda::sae_d_in(*sae);
  const int np = cuda::sae_num_params(*sae);
  const std::vector<int64_t> shapes[cuda::kSaeMaxParams] = {{M, D}, {M}, {M, D}, {D}, {D, D}};
  Tensor params[cuda::kSaeMaxParams];
  cuda::SaeOptState st;
  Napi::Value pv = o.Get("params");
  if (!pv.IsUndefined() && !pv.IsNull()) {
    if (!pv.IsObject()) fail(ErrorKind::Value, "state.params must be an object {wEnc?, bEnc?, wDec?, bDec?, wSkip?}");
    for (int i = 0; i < cuda::kSaeMaxParams; ++i) {
      params[i] = opt_tensor(pv.As<Napi::Object>(), kSaeParamNames[i]);
      if (!params[i].defined()) continue;
      if (i >= np) fail(ErrorKind::Value, "state.params.wSkip given but this CUDA sparse coder has no skip connection");
      expect_float(params[i], kSaeParamNames[i]);
      expect_shape(params[i], shapes[i], kSaeParamNames[i]);
    }
  }
  auto slot = [&](const char* key, Tensor (&t)[cuda::kSaeMaxParams]) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() || v.IsNull()) return;
    const uint32_t len = v.IsArray() ? v.As<Napi::Array>().Length() : 0;
    if (!v.IsArray() || (len != 4 && len != uint32_t(np)))
      fail(ErrorKind::Value, std::string("state.") + key + " must be an array of " + (np == 5 ? "4 or 5" : "4") +
                                 " tensors (wEnc, bEnc, wDec, bDec" + (np == 5 ? ", wSkip)" : ")"));
    Napi::Array a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < len; ++i) {
      Napi::Value e = a.Get(i);
      if (e.IsUndefined() || e.IsNull()) continue;
      const std::string name = std::string(key) + "." + kSaeParamNames[i];
      t[i] = value_to_tensor(e, name.c_str());
      expect_dtype(t[i], DType::F32, name.c_str());
      expect_shape(t[i], shapes[i], name.c_str());
    }
  };
  slot("m", st.m);
  slot("v", st.v);
  slot("z", st.z);
  for (int i = 0; i < np; ++i)
    if (st.m[i].defined() != st.v[i].defined())
      fail(ErrorKind::Value, std::string("state.m and state.v must both give ") + kSaeParamNames[i] + " or both leave it out (Adam)");
  const bool reset = opt_bool(o, "resetOptimizer", false), zero_grads = opt_bool(o, "zeroGrads", false);
  return run_async(
      info.Env(),
      [=] {
        Tensor p[cuda::kSaeMaxParams] = {params[0], params[1], params[2], params[3], params[4]};
        cuda::sae_load_state(*sae, p, st, reset, zero_grads);
      },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
}

Napi::Value cuda_sae_lerp(const Napi::CallbackInfo& info) {
  SaeHolder sae = sae_arg(info, 0);
  double w = arg_number(info, 1, "weight");
  if (!std::isfinite(w)) fail(ErrorKind::Value, "weight must be finite");
  return run_async(
      info.Env(), [=] { cuda::sae_lerp_z(*sae, w); }, [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
}

// cudaTotalVariance(y [N,D]) -> Promise<number>: Σ (y − column mean)² (f32 on the device).
Napi::Value cuda_total_variance(const Napi::CallbackInfo& info) {
  Tensor y = arg_tensor(info, 0, "y");
  expect_float(y, "y");
  expect_ndim(y, 2, "y");
  if (y.dim(0) * std::max<int64_t>(y.dim(1), 1) >= (int64_t(1) << 40)) fail(ErrorKind::Value, "y is too large");
  auto res = std::make_shared<double>(0.0);
  return run_async(
      info.Env(), [=] { *res = cuda::total_variance(y); },
      [res](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *res); });
}

Napi::Value cuda_sae_dispose(const Napi::CallbackInfo& info) {
  Napi::Value v = info[0];
  if (v.IsObject()) {
    Napi::Value ext = v.As<Napi::Object>().Get("_native");
    if (ext.IsExternal()) ext.As<Napi::External<SaeHolder>>().Data()->reset();
  }
  return info.Env().Undefined();
}

// cudaDecodeBackward(gradOut [N,D], acts, indices, wDec) -> Promise<{gradWDec, gradActs, gradBDec}>
Napi::Value cuda_decode_backward(const Napi::CallbackInfo& info) {
  Tensor g = arg_tensor(info, 0, "gradOut");
  Tensor a = arg_tensor(info, 1, "acts");
  Tensor i = arg_tensor(info, 2, "indices");
  Tensor w = arg_tensor(info, 3, "wDec");
  check_sparse_pair(a, i, "acts", "indices");
  expect_float(w, "wDec");
  expect_ndim(w, 2, "wDec");
  expect_float(g, "gradOut");
  expect_shape(g, {a.dim(0), w.dim(1)}, "gradOut");
  expect_indices(i, w.dim(0), "indices");
  auto res = std::make_shared<cuda::DecodeGrads>();
  return run_async(
      info.Env(), [=] { *res = cuda::decode_backward(g, a, i, w); },
      [res](Napi::Env env) -> Napi::Value {
        return wrap_all(env, {{"gradWDec", res->grad_w_dec}, {"gradActs", res->grad_acts}, {"gradBDec", res->grad_b_dec}});
      });
}

// cudaEncoderBackward(gradActs [N,k], indices, xIn [N,D], wEnc [M,D]) -> Promise<{gradX, gradWEnc, gradBEnc}>
Napi::Value cuda_encoder_backward(const Napi::CallbackInfo& info) {
  Tensor g = arg_tensor(info, 0, "gradActs");
  Tensor i = arg_tensor(info, 1, "indices");
  Tensor x = arg_tensor(info, 2, "xIn");
  Tensor w = arg_tensor(info, 3, "wEnc");
  check_sparse_pair(g, i, "gradActs", "indices");
  expect_float(w, "wEnc");
  expect_ndim(w, 2, "wEnc");
  expect_float(x, "xIn");
  expect_shape(x, {g.dim(0), w.dim(1)}, "xIn");
  expect_indices(i, w.dim(0), "indices");
  auto res = std::make_shared<cuda::EncoderGrads>();
  return run_async(
      info.Env(), [=] { *res = cuda::encoder_backward(g, i, x, w); },
      [res](Napi::Env env) -> Napi::Value {
        return wrap_all(env, {{"gradX", res->grad_x}, {"gradWEnc", res->grad_w_enc}, {"gradBEnc", res->grad_b_enc}});
      });
}

// cudaNormalizeRows(w [M,D], {eps?}) / cudaProjectGrad(grad [M,D], w [M,D]) -> Promise<[M,D] f32>
Napi::Value cuda_normalize_rows(const Napi::CallbackInfo& info) {
  Tensor w = arg_tensor(info, 0, "w");
  Napi::Object opts = opts_at(info, 1);
  float eps = float(opt_number(opts, "eps", 1.1920928955078125e-07));
  expect_float(w, "w");
  expect_ndim(w, 2, "w");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [=] { *out = cuda::normalize_rows(w, eps); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

Napi::Value cuda_project_grad(const Napi::CallbackInfo& info) {
  Tensor g = arg_tensor(info, 0, "grad");
  Tensor w = arg_tensor(info, 1, "w");
  expect_float(w, "w");
  expect_ndim(w, 2, "w");
  expect_float(g, "grad");
  expect_shape(g, w.shape, "grad");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [=] { *out = cuda::project_grad(g, w); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

// cudaAdamStep(param, grad, m, v, {lr, beta1?, beta2?, eps?, step}) -> Promise<{param, m, v}>
Napi::Value cuda_adam_step(const Napi::CallbackInfo& info) {
  Tensor p = arg_tensor(info, 0, "param");
  Tensor g = arg_tensor(info, 1, "grad");
  Tensor m = arg_tensor(info, 2, "m");
  Tensor v = arg_tensor(info, 3, "v");
  Napi::Object o = opts_at(info, 4);
  double lr = opt_number(o, "lr", -1), b1 = opt_number(o, "beta1", 0.9), b2 = opt_number(o, "beta2", 0.999);
  double eps = opt_number(o, "eps", 1e-8);
  int64_t step = opt_int(o, "step", 0);
  if (!(lr >= 0)) fail(ErrorKind::Value, "cudaAdamStep: lr must be >= 0");
  if (step < 1) fail(ErrorKind::Value, "cudaAdamStep: step must be >= 1 (the step count after this update)");
  if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1)) fail(ErrorKind::Value, "cudaAdamStep: betas must be in [0, 1)");
  for (auto [t, n] : {std::pair<Tensor*, const char*>{&p, "param"}, {&g, "grad"}, {&m, "m"}, {&v, "v"}}) {
    expect_float(*t, n);
    expect_shape(*t, p.shape, n);
  }
  auto res = std::make_shared<cuda::AdamState>();
  return run_async(
      info.Env(), [=] { *res = cuda::adam_step(p, g, m, v, lr, b1, b2, eps, step); },
      [res](Napi::Env env) -> Napi::Value { return wrap_all(env, {{"param", res->param}, {"m", res->m}, {"v", res->v}}); });
}

// cudaSignumStep(y, z, grad, {lr, c, beta?}) -> Promise<{y, z}>
Napi::Value cuda_signum_step(const Napi::CallbackInfo& info) {
  Tensor y = arg_tensor(info, 0, "y");
  Tensor z = arg_tensor(info, 1, "z");
  Tensor g = arg_tensor(info, 2, "grad");
  Napi::Object o = opts_at(info, 3);
  double lr = opt_number(o, "lr", -1), c = opt_number(o, "c", -1), beta = opt_number(o, "beta", 0.95);
  if (!(lr > 0)) fail(ErrorKind::Value, "cudaSignumStep: lr must be > 0 (SignSGD rejects lr <= 0)");
  if (!(c >= 0 && c <= 1)) fail(ErrorKind::Value, "cudaSignumStep: c must be in [0, 1]");
  if (!(beta > 0 && beta < 1)) fail(ErrorKind::Value, "cudaSignumStep: beta must be in (0, 1)");
  for (auto [t, n] : {std::pair<Tensor*, const char*>{&y, "y"}, {&z, "z"}, {&g, "grad"}}) {
    expect_float(*t, n);
    expect_shape(*t, y.shape, n);
  }
  auto res = std::make_shared<cuda::SignumState>();
  return run_async(
      info.Env(), [=] { *res = cuda::signum_step(y, z, g, lr, c, beta); },
      [res](Napi::Env env) -> Napi::Value { return wrap_all(env, {{"y", res->y}, {"z", res->z}}); });
}

// ---------------------------------------------------------------- transformer blocks
// cudaLayerNorm(x [..,D], w? [D], b? [D], {eps}) ; cudaRmsNorm(x, w?, {eps, addOne?})
Napi::Value cuda_layer_norm(const Napi::CallbackInfo& info) {
  Tensor x = arg_tensor(info, 0, "x");
  Tensor w = arg_optional_tensor(info, 1, "w");
  Tensor b = arg_optional_tensor(info, 2, "b");
  float eps = float(opt_number(opts_at(info, 3), "eps", 1e-5));
  expect_float(x, "x");
  if (x.ndim() < 1) fail(ErrorKind::Shape, "x must have at least one dimension");
  if (w.defined()) expect_vec(w, x.dim(-1), "w");
  if (b.defined()) expect_vec(b, x.dim(-1), "b");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [=] { *out = cuda::layer_norm(x, w, b, eps); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

Napi::Value cuda_rms_norm(const Napi::CallbackInfo& info) {
  Tensor x = arg_tensor(info, 0, "x");
  Tensor w = arg_optional_tensor(info, 1, "w");
  Napi::Object o = opts_at(info, 2);
  float eps = float(opt_number(o, "eps", 1e-6));
  bool add_one = opt_bool(o, "addOne", false);
  expect_float(x, "x");
  if (x.ndim() < 1) fail(ErrorKind::Shape, "x must have at least one dimension");
  if (w.defined()) expect_vec(w, x.dim(-1), "w");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [=] { *out = cuda::rms_norm(x, w, eps, add_one); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

// cudaRope(x [T,H,hd], positions int32 [T], {theta, rotaryDim?, neox?})
Napi::Value cuda_rope(const Napi::CallbackInfo& info) {
  Tensor x = arg_tensor(info, 0, "x");
  Tensor pos = arg_tensor(info, 1, "positions");
  Napi::Object o = opts_at(info, 2);
  expect_float(x, "x");
  expect_ndim(x, 3, "x");
  expect_dtype(pos, DType::I32, "positions");
  expect_shape(pos, {x.dim(0)}, "positions");
  double theta = opt_number(o, "theta", 10000);
  int64_t rd = opt_int(o, "rotaryDim", x.dim(2));
  bool neox = opt_bool(o, "neox", true);
  if (!(theta > 0)) fail(ErrorKind::Value, "theta must be > 0");
  if (rd < 0 || rd > x.dim(2) || rd % 2) fail(ErrorKind::Value, "rotaryDim must be even and <= head_dim");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [=] { *out = cuda::rope(x, pos, theta, rd, neox); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

// cudaActivation(x, kind: 'gelu'|'gelu_tanh'|'silu'|'relu')
Napi::Value cuda_activation(const Napi::CallbackInfo& info) {
  Tensor x = arg_tensor(info, 0, "x");
  std::string kind = arg_string(info, 1, "kind");
  cuda::Act a;
  if (kind == "gelu") a = cuda::Act::GeluErf;
  else if (kind == "gelu_tanh" || kind == "gelu_new" || kind == "gelu_pytorch_tanh") a = cuda::Act::GeluTanh;
  else if (kind == "silu") a = cuda::Act::Silu;
  else if (kind == "relu") a = cuda::Act::Relu;
  else fail(ErrorKind::Value, "activation kind must be gelu, gelu_tanh, silu or relu, got '" + kind + "'");
  expect_float(x, "x");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [=] { *out = cuda::activation(x, a); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

// cudaAttention(q [T,Hq,hd], k [T,Hkv,hd], v [T,Hkv,hd], {scale?, causal?, window?, softcap?})
Napi::Value cuda_attention(const Napi::CallbackInfo& info) {
  Tensor q = arg_tensor(info, 0, "q");
  Tensor k = arg_tensor(info, 1, "k");
  Tensor v = arg_tensor(info, 2, "v");
  Napi::Object o = opts_at(info, 3);
  cuda::AttentionOptions ao;
  ao.scale = float(opt_number(o, "scale", 0));
  ao.causal = opt_bool(o, "causal", true);
  ao.window = opt_int(o, "window", 0);
  ao.softcap = float(opt_number(o, "softcap", 0));
  for (auto [t, n] : {std::pair<Tensor*, const char*>{&q, "q"}, {&k, "k"}, {&v, "v"}}) {
    expect_float(*t, n);
    expect_ndim(*t, 3, n);
  }
  expect_shape(v, k.shape, "v");
  if (k.dim(0) != q.dim(0) || k.dim(2) != q.dim(2))
    fail(ErrorKind::Shape, "k is " + shape_str(k.shape) + " but q is " + shape_str(q.shape));
  if (k.dim(1) < 1 || q.dim(1) % k.dim(1) != 0)
    fail(ErrorKind::Shape, "query heads (" + std::to_string(q.dim(1)) + ") must be a multiple of kv heads (" +
                               std::to_string(k.dim(1)) + ")");
  if (q.dim(2) > 256) fail(ErrorKind::Value, "cudaAttention supports head_dim <= 256");
  if (ao.window < 0) fail(ErrorKind::Value, "window must be >= 0");
  if (ao.window > 0 && !ao.causal) fail(ErrorKind::Value, "a sliding window needs causal attention");
  if (ao.scale < 0 || ao.softcap < 0) fail(ErrorKind::Value, "scale and softcap must be >= 0");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [=] { *out = cuda::attention(q, k, v, ao); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

// cudaFusedTopkMaxK() -> number (0 without a device)
Napi::Value cuda_fused_max_k(const Napi::CallbackInfo& info) {
  try {
    return Napi::Number::New(info.Env(), double(cuda::fused_topk_max_k()));
  } catch (const cuda::CudaError&) {
    return Napi::Number::New(info.Env(), 0);
  }
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "cudaProbe", cuda_probe);
  export_fn(env, exports, "cudaMatmul", cuda_matmul);
  export_fn(env, exports, "cudaBench", cuda_bench);
  export_fn(env, exports, "cudaTopkEncode", cuda_topk_encode);
  export_fn(env, exports, "cudaEncoderCreate", cuda_encoder_create);
  export_fn(env, exports, "cudaEncoderEncode", cuda_encoder_encode);
  export_fn(env, exports, "cudaEncoderDispose", cuda_encoder_dispose);
  export_fn(env, exports, "cudaDecode", cuda_decode);
  export_fn(env, exports, "cudaDecoderCreate", cuda_decoder_create);
  export_fn(env, exports, "cudaDecoderDecode", cuda_decoder_decode);
  export_fn(env, exports, "cudaDecoderDispose", cuda_decoder_dispose);
  export_fn(env, exports, "cudaDecodeBackward", cuda_decode_backward);
  export_fn(env, exports, "cudaSaeCreate", cuda_sae_create);
  export_fn(env, exports, "cudaSaeForwardBackward", cuda_sae_forward_backward);
  export_fn(env, exports, "cudaSaeApply", cuda_sae_apply);
  export_fn(env, exports, "cudaSaeRead", cuda_sae_read);
  export_fn(env, exports, "cudaSaeDispose", cuda_sae_dispose);
  export_fn(env, exports, "cudaSaeEncode", cuda_sae_encode);
  export_fn(env, exports, "cudaSaeDecode", cuda_sae_decode);
  export_fn(env, exports, "cudaSaeReadState", cuda_sae_read_state);
  export_fn(env, exports, "cudaSaeLoadState", cuda_sae_load_state);
  export_fn(env, exports, "cudaSaeLerp", cuda_sae_lerp);
  export_fn(env, exports, "cudaTotalVariance", cuda_total_variance);
  export_fn(env, exports, "cudaEncoderBackward", cuda_encoder_backward);
  export_fn(env, exports, "cudaNormalizeRows", cuda_normalize_rows);
  export_fn(env, exports, "cudaProjectGrad", cuda_project_grad);
  export_fn(env, exports, "cudaAdamStep", cuda_adam_step);
  export_fn(env, exports, "cudaSignumStep", cuda_signum_step);
  export_fn(env, exports, "cudaLayerNorm", cuda_layer_norm);
  export_fn(env, exports, "cudaRmsNorm", cuda_rms_norm);
  export_fn(env, exports, "cudaRope", cuda_rope);
  export_fn(env, exports, "cudaActivation", cuda_activation);
  export_fn(env, exports, "cudaAttention", cuda_attention);
  export_fn(env, exports, "cudaFusedTopkMaxK", cuda_fused_max_k);
}

}  // namespace
SPX_REGISTER(cuda_ops, init);
}  // namespace sparsify
