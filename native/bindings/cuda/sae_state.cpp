// N-API bindings (CUDA build only): The resident training state of one coder on the device (native/cuda/sae_state.cu): cudaSae*.
// GPU failures reject with DeviceError (codes: ERR_SPARSIFY_CUDA_OOM, _STICKY, _UNAVAILABLE, ERR_SPARSIFY_DEVICE).
#include <cuda_runtime_api.h>

#include <cmath>
#include <functional>
#include <memory>

#include "bindings/cuda/cuda_binding_util.h"
#include "bindings/sae_args.h"
#include "cuda/cuda_check.h"
#include "cuda/cuda_context.h"
#include "cuda/cuda_ops.h"
#include "core/coder_spec.h"
#include "core/napi_util.h"

namespace sparsify {
namespace {

// The resident state's kernels select at most 8192 latents per row.
constexpr int64_t kMaxK = 8192;
constexpr const char* kOnCuda = " on the CUDA backend";
using namespace cuda_binding;

// ---- resident training state (sae_state.cu): a CudaSaeState object (ObjectWrap) ----
// cudaSaeCreate({wEnc, bEnc, wDec, bDec, wSkip?}, {k, activation?, transcode?, normalizeDecoder?, computeDtype?}) -> Promise<CudaSaeState>
//   (wSkip [d_in, d_in]: skip_connection, a fifth parameter; logThreshold [M]: jumprelu, slot 5;
//   the object has numLatents and dIn)
// sae.forwardBackward(x, {y?, deadMask?, auxkAlpha?, lossScale?, auxkIncludesBDec?, k?, activation?,
//   normalizeDecoder?, totalVariance?, backward? = true, outputs? = false, multiTopk? = false, didFire?, trackFired?,
//   rowBegin?, rowEnd?, batchVariance?, deadFromCounters?}) -> Promise<{fvu, auxkLoss, multiTopkFvu, kAux, numDead, totalVariance, indices?, acts?, saeOut?}>
//   (indices only with outputs or didFire; trackFired records the selection on the device, takeFired reads it)
//   (gradients accumulate on the device; with multiTopk indices / acts / saeOut are the 4k selection's)
// sae.encode(x, {k?, activation?, preActs?}) -> Promise<{acts, indices, preActs?}>;  sae.decode(acts, indices) -> Promise<[N,D]>
// sae.apply({optimizer: 'adam'|'signum'|'muon', lr, beta1?, beta2?, eps?, step?, c?, beta?, project?,
//   muon: vectorLr (the Adam half's lr), momentum?, nesterov?, weightDecay?, nsSteps?, maxGradNorm?})
//   -> Promise<number | undefined> (with maxGradNorm > 0: the global gradient norm before clipping)
// sae.read({evalBeta?, grads?}) -> Promise<{wEnc, bEnc, wDec, bDec, wSkip?, gradWEnc?, ...}>;  sae.dispose()
// sae.readState() -> Promise<{m?, v?, z?}> (arrays by slot: wEnc, bEnc, wDec, bDec, wSkip, logThreshold, as
//   long as the state's last slot; undefined where absent)
// sae.loadState({params?: {wEnc?, ..., wSkip?, logThreshold?}, m?, v?, z?, resetOptimizer?, zeroGrads?}) -> Promise<undefined>
//   (slot arrays of 4, or as long as the state's slots)
// sae.views() -> {params: {wEnc, ...}, grads: {wEnc, ...}, fired: int32 [M]}: device tensors viewing the
//   state's own buffers (the kind kernels of native/cuda/threshold_step.cu write them in place)
// sae.lerp(weight) -> Promise<undefined>  (schedule-free eval/train: p = lerp(p, z, weight))
// sae.takeFired() -> Promise<host int32 [M]>
// sae.updateDeadLatents(tokens) -> Promise<number dead>;  sae.deadLatentCounts() -> Promise<Float64Array>
// sae.loadDeadLatents(counts: Float64Array | undefined, threshold) -> Promise<undefined>
//   (sparsify's num_tokens_since_fired on the device; deadFromCounters steps take AuxK's mask from it)
using SaeHolder = std::shared_ptr<cuda::ResidentSae>;

// Marks CudaSaeState objects, so a method called on another object is a typed error.
constexpr napi_type_tag kSaeStateTag = {0x5e7a1c0d3b2f4e91ULL, 0xa8c64d2e7f105b39ULL};

// The object every cudaSaeCreate resolves to; its methods are the functions below.
class CudaSaeStateWrap : public Napi::ObjectWrap<CudaSaeStateWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit CudaSaeStateWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CudaSaeStateWrap>(info) {
    translate(info.Env(), [&] {
      if (!info[0].IsExternal()) fail(ErrorKind::Value, "CudaSaeState objects come from cudaSaeCreate");
      sae = *info[0].As<Napi::External<SaeHolder>>().Data();
      if (napi_type_tag_object(info.Env(), info.This(), &kSaeStateTag) != napi_ok)
        fail(ErrorKind::Internal, "could not tag the CudaSaeState object");
      return 0;
    });
  }
  SaeHolder sae;  // reset by dispose(); jobs hold their own reference

 private:
  template <Napi::Value (*F)(const Napi::CallbackInfo&)>
  Napi::Value Call(const Napi::CallbackInfo& info) {
    AnyDeviceTensors any_device;
    return guarded(info, F);
  }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    sae.reset();
    return info.Env().Undefined();
  }
};

// The state of the method's object (this).
SaeHolder& sae_of(const Napi::CallbackInfo& info) {
  bool tagged = false;
  if (info.This().IsObject()) napi_check_object_type_tag(info.Env(), info.This(), &kSaeStateTag, &tagged);
  if (!tagged) fail(ErrorKind::Value, "a CudaSaeState method called on another object");
  CudaSaeStateWrap* w = CudaSaeStateWrap::Unwrap(info.This().As<Napi::Object>());
  if (!w->sae) fail(ErrorKind::Disposed, "the CUDA sparse coder state was disposed");
  return w->sae;
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
  Tensor lt = opt_tensor(params, "logThreshold");
  if (lt.defined()) {
    expect_float(lt, "logThreshold");
    expect_vec(lt, M, "logThreshold");
  }
  cuda::SaeConfig cfg;
  cfg.k = opt_int(o, "k", 0);
  std::string act = opt_string(o, "activation", "topk");
  if (act != "topk" && act != "groupmax") fail(ErrorKind::Value, "activation must be 'topk' or 'groupmax', got '" + act + "'");
  cfg.groupmax = act == "groupmax";
  cfg.transcode = opt_bool(o, "transcode", false);
  cfg.normalize_decoder = opt_bool(o, "normalizeDecoder", true);
  cfg.compute = compute_dtype(o);
  check_coder_spec(M, cfg.k, cfg.groupmax, false, kMaxK, kOnCuda);
  if (M >= (int64_t(1) << 31)) fail(ErrorKind::Value, "num_latents must be < 2^31");
  auto res = std::make_shared<SaeHolder>();
  return run_async(
      info.Env(), [=] { *res = cuda::make_resident_sae(we, be, wd, bd, ws, cfg, lt); },
      [res](Napi::Env env) -> Napi::Value {
        Napi::Object obj = kept_class(env, "CudaSaeState").New({Napi::External<SaeHolder>::New(env, res.get())});
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
  check_coder_spec(M, c.k, c.groupmax, false, kMaxK, kOnCuda);
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
  SaeHolder sae = sae_of(info);
  Tensor x = arg_tensor(info, 0, "x");
  Napi::Object o = opts_at(info, 1);
  Tensor y = opt_tensor(o, "y"), dm = opt_tensor(o, "deadMask"), fired = opt_tensor(o, "didFire");
  cuda::SaeCall call = read_sae_call(o, *sae);
  call.auxk_alpha = opt_number(o, "auxkAlpha", 0.0);  // as the CPU saeStep: AuxK only when asked
  call.loss_scale = opt_number(o, "lossScale", 1.0);
  call.auxk_includes_b_dec = opt_bool(o, "auxkIncludesBDec", false);  // fixed AuxK (#134), as the CPU saeStep
  call.total_variance = opt_number(o, "totalVariance", -1);
  call.backward = opt_bool(o, "backward", true);
  call.outputs = opt_bool(o, "outputs", false);
  call.multi_topk = opt_bool(o, "multiTopk", false);
  call.track_fired = opt_bool(o, "trackFired", false);
  const int64_t M = cuda::sae_num_latents(*sae), D = cuda::sae_d_in(*sae);
  check_coder_spec(M, call.k, call.groupmax, call.multi_topk, kMaxK, kOnCuda);
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
    // batchVariance: normalise by the whole batch's variance scaled to these rows (PR #138),
    // computed on the device in the same job.
    if (opt_bool(o, "batchVariance", false)) {
      call.variance_of = y.defined() ? y : x;
      call.variance_fraction = double(e - b) / double(x.dim(0));
    }
    x = x.rows(b, e);
    if (y.defined()) y = y.rows(b, e);
  }
  check_sae_input(x, D, "x");
  call.dead_from_counters = opt_bool(o, "deadFromCounters", false);
  if (call.dead_from_counters && dm.defined()) fail(ErrorKind::Value, "pass deadMask or deadFromCounters, not both");
  int64_t num_dead = call.dead_from_counters ? cuda::sae_num_dead(*sae) : 0;
  if (dm.defined()) {
    expect_dtype(dm, DType::I32, "deadMask");
    expect_shape(dm, {M}, "deadMask");
    const Tensor host = host_copy(dm);  // a device mask is copied back to be counted
    const int32_t* p = host.data<int32_t>();
    for (int64_t m = 0; m < M; ++m) num_dead += p[m] != 0;
  }
  // The CSR slots, row_topk rows and iota are int32, so N·k and N·k_aux must stay
  // below 2^31; and AuxK's row_topk keeps k_aux = min(d/2, num_dead) in shared memory (<= 8192).
  // AuxK runs whenever some latent is dead (sae_state.cu), as the CPU saeStep.
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
        if (res->indices.defined()) obj.Set("indices", TensorHandle::Wrap(env, res->indices));
        if (res->acts.defined()) obj.Set("acts", TensorHandle::Wrap(env, res->acts));
        if (res->sae_out.defined()) obj.Set("saeOut", TensorHandle::Wrap(env, res->sae_out));
        return obj;
      });
}

// cudaSaeTakeFired(sae) -> Promise<host int32 [M]>: the latents selected by trackFired steps since
// the last call (0/1), cleared on the device.
Napi::Value cuda_sae_take_fired(const Napi::CallbackInfo& info) {
  SaeHolder sae = sae_of(info);
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [=] { *out = cuda::sae_take_fired(*sae); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

Napi::Value cuda_sae_encode(const Napi::CallbackInfo& info) {
  SaeHolder sae = sae_of(info);
  Tensor x = arg_tensor(info, 0, "x");
  Napi::Object opts = opts_at(info, 1);
  cuda::SaeCall call = read_sae_call(opts, *sae);
  const bool pre_acts = opt_bool(opts, "preActs", false);
  check_sae_input(x, cuda::sae_d_in(*sae), "x");
  if (int64_t(x.dim(0)) * call.k >= (int64_t(1) << 31)) fail(ErrorKind::Value, "x rows * k must be < 2^31");
  auto res = std::make_shared<cuda::SaeCodes>();
  return run_async(
      info.Env(), [=] { *res = cuda::sae_encode(*sae, x, call.k, call.groupmax, pre_acts); },
      [res](Napi::Env env) -> Napi::Value {
        return wrap_all(env, {{"acts", res->acts}, {"indices", res->indices}, {"preActs", res->pre_acts}});
      });
}

Napi::Value cuda_sae_decode(const Napi::CallbackInfo& info) {
  SaeHolder sae = sae_of(info);
  Tensor a = arg_tensor(info, 0, "acts");
  Tensor i = arg_tensor(info, 1, "indices");
  check_sparse_pair(a, i, "acts", "indices");
  expect_indices(i, cuda::sae_num_latents(*sae), "indices");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [=] { *out = cuda::sae_decode(*sae, a, i); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

Napi::Value cuda_sae_apply(const Napi::CallbackInfo& info) {
  Napi::Object o = opts_at(info, 0);
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
  so.max_grad_norm = opt_number(o, "maxGradNorm", 0);
  if (!(std::isfinite(so.max_grad_norm) && so.max_grad_norm >= 0))
    fail(ErrorKind::Value, "maxGradNorm must be a finite number >= 0 (0 = no clipping), got " + std::to_string(so.max_grad_norm));
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
  SaeHolder sae = sae_of(info);
  auto norm = std::make_shared<double>(-1.0);
  return run_async(
      info.Env(), [=] { *norm = cuda::sae_apply(*sae, so); },
      [norm](Napi::Env env) -> Napi::Value { return *norm >= 0 ? Napi::Number::New(env, *norm) : env.Undefined(); });
}

Napi::Value cuda_sae_read(const Napi::CallbackInfo& info) {
  SaeHolder sae = sae_of(info);
  Napi::Object o = opts_at(info, 0);
  double eval_beta = opt_number(o, "evalBeta", 0);
  bool with_grads = opt_bool(o, "grads", false);
  if (eval_beta < 0 || eval_beta >= 1) fail(ErrorKind::Value, "evalBeta must be in [0, 1)");
  auto res = std::make_shared<cuda::SaeParams>();
  return run_async(
      info.Env(), [=] { *res = cuda::sae_read(*sae, eval_beta, with_grads); },
      [res](Napi::Env env) -> Napi::Value {
        return wrap_all(env, {{"wEnc", res->w_enc}, {"bEnc", res->b_enc}, {"wDec", res->w_dec}, {"bDec", res->b_dec},
                              {"wSkip", res->w_skip}, {"logThreshold", res->log_threshold}, {"gradWEnc", res->g_w_enc},
                              {"gradBEnc", res->g_b_enc}, {"gradWDec", res->g_w_dec}, {"gradBDec", res->g_b_dec},
                              {"gradWSkip", res->g_w_skip}, {"gradLogThreshold", res->g_log_threshold}});
      });
}

const char* const kSaeParamNames[cuda::kSaeMaxParams] = {"wEnc", "bEnc", "wDec", "bDec", "wSkip", "logThreshold"};

Napi::Value cuda_sae_views(const Napi::CallbackInfo& info) {
  SaeHolder sae = sae_of(info);
  const cuda::SaeViews v = cuda::sae_views(sae);
  Napi::Env env = info.Env();
  Napi::Object params = Napi::Object::New(env), grads = Napi::Object::New(env), out = Napi::Object::New(env);
  for (int i = 0; i < cuda::kSaeMaxParams; ++i) {
    if (!v.params[i].defined()) continue;
    params.Set(kSaeParamNames[i], TensorHandle::Wrap(env, v.params[i]));
    grads.Set(kSaeParamNames[i], TensorHandle::Wrap(env, v.grads[i]));
  }
  out.Set("params", params);
  out.Set("grads", grads);
  out.Set("fired", TensorHandle::Wrap(env, v.fired));
  return out;
}

Napi::Value cuda_sae_read_state(const Napi::CallbackInfo& info) {
  SaeHolder sae = sae_of(info);
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

// What a state without optional slot i lacks, for the errors.
std::string lacks(int i) { return i == 4 ? "no skip connection" : "no log_threshold (not a jumprelu coder)"; }

Napi::Value cuda_sae_load_state(const Napi::CallbackInfo& info) {
  SaeHolder sae = sae_of(info);
  Napi::Object o = arg_object(info, 0, "state");
  const int64_t M = cuda::sae_num_latents(*sae), D = cuda::sae_d_in(*sae);
  const int np = cuda::sae_num_params(*sae);
  const std::vector<int64_t> shapes[cuda::kSaeMaxParams] = {{M, D}, {M}, {M, D}, {D}, {D, D}, {M}};
  Tensor params[cuda::kSaeMaxParams];
  cuda::SaeOptState st;
  Napi::Value pv = o.Get("params");
  if (!pv.IsUndefined() && !pv.IsNull()) {
    if (!pv.IsObject()) fail(ErrorKind::Value, "state.params must be an object {wEnc?, bEnc?, wDec?, bDec?, wSkip?, logThreshold?}");
    for (int i = 0; i < cuda::kSaeMaxParams; ++i) {
      params[i] = opt_tensor(pv.As<Napi::Object>(), kSaeParamNames[i]);
      if (!params[i].defined()) continue;
      if (!cuda::sae_has_param(*sae, i))
        fail(ErrorKind::Value, std::string("state.params.") + kSaeParamNames[i] + " given but this CUDA sparse coder has " + lacks(i));
      expect_float(params[i], kSaeParamNames[i]);
      expect_shape(params[i], shapes[i], kSaeParamNames[i]);
    }
  }
  auto slot = [&](const char* key, Tensor (&t)[cuda::kSaeMaxParams]) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() || v.IsNull()) return;
    const uint32_t len = v.IsArray() ? v.As<Napi::Array>().Length() : 0;
    if (!v.IsArray() || (len != 4 && len != uint32_t(np)))
      fail(ErrorKind::Value, std::string("state.") + key + " must be an array of 4" + (np > 4 ? " or " + std::to_string(np) : "") +
                                 " tensors (wEnc, bEnc, wDec, bDec" + (np > 4 ? ", wSkip, logThreshold by slot)" : ")"));
    Napi::Array a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < len; ++i) {
      Napi::Value e = a.Get(i);
      if (e.IsUndefined() || e.IsNull()) continue;
      const std::string name = std::string(key) + "." + kSaeParamNames[i];
      if (!cuda::sae_has_param(*sae, int(i))) fail(ErrorKind::Value, name + " given but this CUDA sparse coder has " + lacks(int(i)));
      t[i] = value_to_tensor(e, name.c_str());
      expect_dtype(t[i], DType::F32, name.c_str());
      expect_shape(t[i], shapes[i], name.c_str());
    }
  };
  slot("m", st.m);
  slot("v", st.v);
  slot("z", st.z);
  // Adam has both moments; muon's 2-D parameters have only the momentum buffer (m).
  for (int i = 0; i < np; ++i)
    if (st.v[i].defined() && !st.m[i].defined())
      fail(ErrorKind::Value, std::string("state.v gives ") + kSaeParamNames[i] + " but state.m does not (Adam needs both moments)");
  const bool reset = opt_bool(o, "resetOptimizer", false), zero_grads = opt_bool(o, "zeroGrads", false);
  return run_async(
      info.Env(),
      [=] {
        Tensor p[cuda::kSaeMaxParams] = {params[0], params[1], params[2], params[3], params[4], params[5]};
        cuda::sae_load_state(*sae, p, st, reset, zero_grads);
      },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
}

Napi::Value cuda_sae_lerp(const Napi::CallbackInfo& info) {
  SaeHolder sae = sae_of(info);
  double w = arg_number(info, 0, "weight");
  if (!std::isfinite(w)) fail(ErrorKind::Value, "weight must be finite");
  return run_async(
      info.Env(), [=] { cuda::sae_lerp_z(*sae, w); }, [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
}

Napi::Value cuda_sae_update_dead(const Napi::CallbackInfo& info) {
  SaeHolder sae = sae_of(info);
  const double tokens = arg_number(info, 0, "tokens");
  if (!(tokens >= 0) || !std::isfinite(tokens)) fail(ErrorKind::Value, "tokens must be a finite number >= 0");
  auto dead = std::make_shared<int64_t>(0);
  return run_async(
      info.Env(), [=] { *dead = cuda::sae_update_dead(*sae, tokens); },
      [dead](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, double(*dead)); });
}

Napi::Value cuda_sae_dead_counts(const Napi::CallbackInfo& info) {
  SaeHolder sae = sae_of(info);
  auto out = std::make_shared<std::vector<double>>();
  return run_async(
      info.Env(), [=] { *out = cuda::sae_read_dead(*sae); },
      [out](Napi::Env env) -> Napi::Value {
        Napi::Float64Array a = Napi::Float64Array::New(env, out->size());
        std::copy(out->begin(), out->end(), a.Data());
        return a;
      });
}

Napi::Value cuda_sae_load_dead(const Napi::CallbackInfo& info) {
  SaeHolder sae = sae_of(info);
  const std::vector<double> counts = read_dead_counts(info[0], cuda::sae_num_latents(*sae));
  const double threshold = arg_number(info, 1, "threshold");
  if (std::isnan(threshold)) fail(ErrorKind::Value, "threshold must be a number");
  return run_async(
      info.Env(), [=] { cuda::sae_load_dead(*sae, counts, threshold); },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
}

Napi::Function CudaSaeStateWrap::Init(Napi::Env env) {
  using W = CudaSaeStateWrap;
  return DefineClass(env, "CudaSaeState",
                     {InstanceMethod<&W::Call<cuda_sae_forward_backward>>("forwardBackward"),
                      InstanceMethod<&W::Call<cuda_sae_encode>>("encode"), InstanceMethod<&W::Call<cuda_sae_decode>>("decode"),
                      InstanceMethod<&W::Call<cuda_sae_apply>>("apply"), InstanceMethod<&W::Call<cuda_sae_read>>("read"),
                      InstanceMethod<&W::Call<cuda_sae_views>>("views"),
                      InstanceMethod<&W::Call<cuda_sae_read_state>>("readState"),
                      InstanceMethod<&W::Call<cuda_sae_load_state>>("loadState"), InstanceMethod<&W::Call<cuda_sae_lerp>>("lerp"),
                      InstanceMethod<&W::Call<cuda_sae_take_fired>>("takeFired"),
                      InstanceMethod<&W::Call<cuda_sae_update_dead>>("updateDeadLatents"),
                      InstanceMethod<&W::Call<cuda_sae_dead_counts>>("deadLatentCounts"),
                      InstanceMethod<&W::Call<cuda_sae_load_dead>>("loadDeadLatents"), InstanceMethod<&W::Dispose>("dispose")});
}

void init(Napi::Env env, Napi::Object exports) {
  keep_class(env, "CudaSaeState", CudaSaeStateWrap::Init(env));
  export_fn(env, exports, "cudaSaeCreate", cuda_sae_create, Accepts::AnyDeviceTensors);
}

}  // namespace
SPX_REGISTER(cuda_sae_state, init);
}  // namespace sparsify
