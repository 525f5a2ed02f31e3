// CpuSaeState: the CPU resident state of one sparse coder (native/cpu/sae_state.cpp), an
// ObjectWrap class as every stateful native object. Parameter keys: wEnc, bEnc, wDec, bDec, wSkip, logThreshold.
//   new CpuSaeState({wEnc, bEnc, wDec?, bDec, wSkip?, logThreshold?}, {transcode?})   the tensors are shared, not copied
//   .forwardBackward(x, {y?, k, groupmax?, multiTopk?, backward? = true, outputs?, normalizeDecoder?,
//       deadMask?, deadFromCounters?, auxkAlpha?, lossScale?, totalVariance?, rowBegin?, rowEnd?,
//       batchVariance?, trackFired?, didFire?})
//       -> Promise<{fvu, auxkLoss, multiTopkFvu, loss, totalVariance, numDead, saeOut?, latentActs?, latentIndices?}>
//   .optimizerStep({optimizer: 'adam'|'signum'|'muon', lr, project?, beta1?, beta2?, eps?, step?,
//       momentum?, ckp1?, nesterov?, weightDecay?, nsSteps?, vectorLr?, maxGradNorm?})
//       -> Promise<number | undefined> (with maxGradNorm > 0: the gradient norm before clipping)
//   .lerpToZ(weight) -> Promise<undefined>
//   .grads() -> {wEnc, ...} (live; allocated on first use);  .zeroGrads()
//   .moments() -> {m: {wEnc?, ...}, v: {...}, z: {...}} (live);  .loadMoments({m?, v?, z?})
//   .takeFired() -> int32 [M] copy (cleared);  .fired() -> the live int32 [M] marks (the kind kernels write them)
//   .updateDeadLatents(tokens) -> Promise<number dead>;  .deadLatentCounts() -> Float64Array
//   .loadDeadLatents(counts: Float64Array | undefined, threshold)
//   .dispose()
#include <cmath>
#include <cstring>
#include <memory>
#include <string>

#include "core/coder_spec.h"
#include "bindings/sae_args.h"
#include "core/napi_util.h"
#include "cpu/sae_state.h"

namespace sparsify {
namespace {

const char* const kKeys[kSaeParams] = {"wEnc", "bEnc", "wDec", "bDec", "wSkip", "logThreshold"};

void expect_host_f32(const Tensor& t, const std::vector<int64_t>& shape, const std::string& name) {
  expect_dtype(t, DType::F32, name.c_str());
  expect_shape(t, shape, name.c_str());
  if (t.device() != Device::CPU) fail(ErrorKind::Device, name + " must be a CPU tensor");
}



Napi::Object wrap_slots(Napi::Env env, const Tensor (&t)[kSaeParams]) {
  Napi::Object o = Napi::Object::New(env);
  for (int i = 0; i < kSaeParams; ++i)
    if (t[i].defined()) o.Set(kKeys[i], TensorHandle::Wrap(env, t[i]));
  return o;
}

class CpuSaeStateWrap : public Napi::ObjectWrap<CpuSaeStateWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "CpuSaeState",
                       {InstanceMethod<&CpuSaeStateWrap::ForwardBackward>("forwardBackward"),
                        InstanceMethod<&CpuSaeStateWrap::OptimizerStep>("optimizerStep"),
                        InstanceMethod<&CpuSaeStateWrap::LerpToZ>("lerpToZ"),
                        InstanceMethod<&CpuSaeStateWrap::Grads>("grads"),
                        InstanceMethod<&CpuSaeStateWrap::ZeroGrads>("zeroGrads"),
                        InstanceMethod<&CpuSaeStateWrap::Moments>("moments"),
                        InstanceMethod<&CpuSaeStateWrap::LoadMoments>("loadMoments"),
                        InstanceMethod<&CpuSaeStateWrap::TakeFired>("takeFired"),
                        InstanceMethod<&CpuSaeStateWrap::Fired>("fired"),
                        InstanceMethod<&CpuSaeStateWrap::UpdateDeadLatents>("updateDeadLatents"),
                        InstanceMethod<&CpuSaeStateWrap::DeadLatentCounts>("deadLatentCounts"),
                        InstanceMethod<&CpuSaeStateWrap::LoadDeadLatents>("loadDeadLatents"),
                        InstanceMethod<&CpuSaeStateWrap::Dispose>("dispose")});
  }

  explicit CpuSaeStateWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CpuSaeStateWrap>(info) {
    HostTensorsOnly host_only;
    translate(info.Env(), [&] {
      Napi::Object p = arg_object(info, 0, "params");
      Napi::Object o = info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(info.Env());
      Tensor t[kSaeParams];
      for (int i = 0; i < kSaeParams; ++i) t[i] = opt_tensor(p, kKeys[i]);
      for (int i : {kWEnc, kBEnc, kBDec})
        if (!t[i].defined()) fail(ErrorKind::Value, std::string("params.") + kKeys[i] + " is required");
      expect_dtype(t[kWEnc], DType::F32, "wEnc");
      expect_ndim(t[kWEnc], 2, "wEnc");
      const int64_t M = t[kWEnc].dim(0), D = t[kWEnc].dim(1);
      const std::vector<int64_t> shapes[kSaeParams] = {{M, D}, {M}, {M, D}, {D}, {D, D}, {M}};
      for (int i = 0; i < kSaeParams; ++i)
        if (t[i].defined()) expect_host_f32(t[i], shapes[i], kKeys[i]);
      state_ = make_cpu_sae_state(t, opt_bool(o, "transcode", false));
      return 0;
    });
  }

 private:
  std::shared_ptr<CpuSaeState> state_;  // reset by dispose(); jobs hold their own reference

  std::shared_ptr<CpuSaeState> alive() const {
    if (!state_) fail(ErrorKind::Disposed, "SparseCoder has been disposed");
    return state_;
  }

  Napi::Value ForwardBackward(const Napi::CallbackInfo& info) {
    HostTensorsOnly host_only;
    return translate(info.Env(), [&]() -> Napi::Value {
      auto st = alive();
      const int64_t M = st->M, D = st->D;
      Tensor x = read_coder_input(info[0], D, "x");
      Napi::Object o = arg_object(info, 1, "options");
      Tensor y;
      Napi::Value yv = o.Get("y");
      if (!yv.IsUndefined() && !yv.IsNull()) {
        y = read_coder_input(yv, D, "y");
        if (y.dim(0) != x.dim(0))
          fail(ErrorKind::Shape, "y has " + std::to_string(y.dim(0)) + " rows but x has " + std::to_string(x.dim(0)));
      }
      SaeStepCall c;
      c.spec.k = opt_int(o, "k", 0);
      c.spec.groupmax = opt_bool(o, "groupmax", false);
      c.spec.transcode = st->transcode;
      c.spec.multi_topk = opt_bool(o, "multiTopk", false);
      c.spec.bf16 = read_compute_bf16(o);
      check_coder_spec(M, c.spec.k, c.spec.groupmax, c.spec.multi_topk);
      c.backward = opt_bool(o, "backward", true);
      c.outputs = opt_bool(o, "outputs", false);
      c.normalize_decoder = opt_bool(o, "normalizeDecoder", false);
      c.dead_mask = read_dead_mask(o.Get("deadMask"), M);
      c.dead_from_counters = opt_bool(o, "deadFromCounters", false);
      if (c.dead_mask && c.dead_from_counters) fail(ErrorKind::Value, "forwardBackward: pass deadMask or deadFromCounters, not both");
      c.auxk_alpha = opt_number(o, "auxkAlpha", 0.0);
      c.loss_scale = opt_number(o, "lossScale", 1.0);
      c.total_variance = opt_number(o, "totalVariance", -1.0);
      if (!std::isfinite(c.auxk_alpha) || c.auxk_alpha < 0) fail(ErrorKind::Value, "auxkAlpha must be a finite number >= 0");
      if (!std::isfinite(c.loss_scale)) fail(ErrorKind::Value, "lossScale must be finite");
      if (!std::isfinite(c.total_variance)) fail(ErrorKind::Value, "totalVariance must be finite (or <= 0 for this batch's)");
      if (o.Has("rowBegin") || o.Has("rowEnd")) {
        c.has_rows = true;
        c.row_begin = opt_int(o, "rowBegin", 0);
        c.row_end = opt_int(o, "rowEnd", x.dim(0));
        if (c.row_begin < 0 || c.row_end < c.row_begin || c.row_end > x.dim(0))
          fail(ErrorKind::Value, "rows [" + std::to_string(c.row_begin) + ", " + std::to_string(c.row_end) +
                                     ") are outside x " + shape_str(x.shape));
        c.batch_variance = opt_bool(o, "batchVariance", false);
      }
      const int64_t N = c.has_rows ? c.row_end - c.row_begin : x.dim(0);
      if (N < 1) fail(ErrorKind::Shape, "x must have at least one row");
      c.track_fired = opt_bool(o, "trackFired", false);
      c.did_fire = opt_tensor(o, "didFire");
      if (c.did_fire.defined()) {
        if (c.track_fired) fail(ErrorKind::Value, "forwardBackward: pass didFire or trackFired, not both");
        expect_dtype(c.did_fire, DType::I32, "didFire");
        expect_shape(c.did_fire, {M}, "didFire");
        if (!c.did_fire.storage->owned_heap) fail(ErrorKind::Value, "didFire is read-only (memory-mapped from a file); clone it before writing to it");
      }
      auto res = std::make_shared<SaeStepOut>();
      return run_async(
          info.Env(), [st, x, y, c, res] { *res = sae_state_step(*st, x, y, c); },
          [res](Napi::Env env) -> Napi::Value {
            return wrap_step_result(env, res->losses, res->sae_out, res->latent_acts, res->latent_idx);
          });
    });
  }

  Napi::Value OptimizerStep(const Napi::CallbackInfo& info) {
    return translate(info.Env(), [&]() -> Napi::Value {
      auto st = alive();
      Napi::Object o = arg_object(info, 0, "update");
      const std::string kind = opt_string(o, "optimizer", "");
      SaeOptimCall c;
      if (kind == "adam") c.kind = OptKind::Adam;
      else if (kind == "signum") c.kind = OptKind::Signum;
      else if (kind == "muon") c.kind = OptKind::Muon;
      else fail(ErrorKind::Value, "optimizer must be 'adam', 'signum' or 'muon', got '" + kind + "'");
      c.project = opt_bool(o, "project", false);
      c.lr = opt_number(o, "lr", 0);
      c.momentum = opt_number(o, "momentum", 0);
      c.ckp1 = opt_number(o, "ckp1", 0);
      c.beta1 = opt_number(o, "beta1", 0.9);
      c.beta2 = opt_number(o, "beta2", 0.999);
      c.eps = opt_number(o, "eps", 1e-8);
      c.step = opt_int(o, "step", 1);
      c.nesterov = opt_bool(o, "nesterov", true);
      c.weight_decay = opt_number(o, "weightDecay", 0);
      c.ns_steps = int(opt_int(o, "nsSteps", 5));
      c.vector_lr = opt_number(o, "vectorLr", 0);
      c.max_grad_norm = opt_number(o, "maxGradNorm", 0);
      if (!std::isfinite(c.lr) || !std::isfinite(c.vector_lr)) fail(ErrorKind::Value, "lr must be finite");
      if (!(std::isfinite(c.max_grad_norm) && c.max_grad_norm >= 0))
        fail(ErrorKind::Value, "maxGradNorm must be a finite number >= 0 (0 = no clipping), got " + std::to_string(c.max_grad_norm));
      if (c.project && !st->has(kWDec)) fail(ErrorKind::Value, "decoder projection needs W_dec");
      auto norm = std::make_shared<double>(-1.0);
      return run_async(
          info.Env(), [st, c, norm] { *norm = sae_state_optimize(*st, c); },
          [norm](Napi::Env env) -> Napi::Value { return *norm >= 0 ? Napi::Number::New(env, *norm) : env.Undefined(); });
    });
  }

  Napi::Value LerpToZ(const Napi::CallbackInfo& info) {
    return translate(info.Env(), [&]() -> Napi::Value {
      auto st = alive();
      const float w = float(arg_number(info, 0, "weight"));
      return run_async(
          info.Env(), [st, w] { sae_state_lerp_z(*st, w); }, [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
    });
  }

  Napi::Value Fired(const Napi::CallbackInfo& info) {
    return translate(info.Env(), [&]() -> Napi::Value { return TensorHandle::Wrap(info.Env(), alive()->fired); });
  }

  Napi::Value Grads(const Napi::CallbackInfo& info) {
    return translate(info.Env(), [&]() -> Napi::Value {
      auto st = alive();
      for (int i = 0; i < kSaeParams; ++i)
        if (st->has(i)) st->grad_of(i);
      return wrap_slots(info.Env(), st->grad);
    });
  }

  Napi::Value ZeroGrads(const Napi::CallbackInfo& info) {
    return translate(info.Env(), [&]() -> Napi::Value {
      sae_state_zero_grads(*alive());
      return info.Env().Undefined();
    });
  }

  Napi::Value Moments(const Napi::CallbackInfo& info) {
    return translate(info.Env(), [&]() -> Napi::Value {
      auto st = alive();
      Napi::Object o = Napi::Object::New(info.Env());
      o.Set("m", wrap_slots(info.Env(), st->m));
      o.Set("v", wrap_slots(info.Env(), st->v));
      o.Set("z", wrap_slots(info.Env(), st->z));
      return o;
    });
  }

  // Replaces every moment (a slot not given starts fresh at the next step).
  Napi::Value LoadMoments(const Napi::CallbackInfo& info) {
    HostTensorsOnly host_only;
    return translate(info.Env(), [&]() -> Napi::Value {
      auto st = alive();
      Napi::Object o = arg_object(info, 0, "moments");
      Tensor next[3][kSaeParams];
      const char* slots[3] = {"m", "v", "z"};
      for (int s = 0; s < 3; ++s) {
        Napi::Value sv = o.Get(slots[s]);
        if (sv.IsUndefined() || sv.IsNull()) continue;
        if (!sv.IsObject()) fail(ErrorKind::Value, std::string("moments.") + slots[s] + " must be an object of tensors");
        for (int i = 0; i < kSaeParams; ++i) {
          Tensor t = opt_tensor(sv.As<Napi::Object>(), kKeys[i]);
          if (!t.defined()) continue;
          const std::string name = std::string(slots[s]) + "." + kKeys[i];
          if (!st->has(i)) fail(ErrorKind::Value, "moments." + name + " given but the coder has no such parameter");
          expect_host_f32(t, st->param[i].shape, name);
          next[s][i] = t;
        }
      }
      for (int i = 0; i < kSaeParams; ++i) {
        st->m[i] = next[0][i];
        st->v[i] = next[1][i];
        st->z[i] = next[2][i];
      }
      return info.Env().Undefined();
    });
  }

  Napi::Value TakeFired(const Napi::CallbackInfo& info) {
    return translate(info.Env(), [&]() -> Napi::Value {
      auto st = alive();
      Tensor out = st->fired.clone();
      std::memset(st->fired.raw(), 0, st->fired.nbytes());
      return TensorHandle::Wrap(info.Env(), out);
    });
  }

  Napi::Value UpdateDeadLatents(const Napi::CallbackInfo& info) {
    return translate(info.Env(), [&]() -> Napi::Value {
      auto st = alive();
      const double tokens = arg_number(info, 0, "tokens");
      if (!(tokens >= 0) || !std::isfinite(tokens)) fail(ErrorKind::Value, "tokens must be a finite number >= 0");
      auto dead = std::make_shared<int64_t>(0);
      return run_async(
          info.Env(), [st, tokens, dead] { *dead = sae_state_update_dead(*st, tokens); },
          [dead](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, double(*dead)); });
    });
  }

  Napi::Value DeadLatentCounts(const Napi::CallbackInfo& info) {
    return translate(info.Env(), [&]() -> Napi::Value {
      auto st = alive();
      Napi::Float64Array a = Napi::Float64Array::New(info.Env(), size_t(st->M));
      std::memcpy(a.Data(), st->since_fired.data(), size_t(st->M) * sizeof(double));
      return a;
    });
  }

  Napi::Value LoadDeadLatents(const Napi::CallbackInfo& info) {
    return translate(info.Env(), [&]() -> Napi::Value {
      auto st = alive();
      const std::vector<double> counts = read_dead_counts(info[0], st->M);
      const double threshold = arg_number(info, 1, "threshold");
      if (std::isnan(threshold)) fail(ErrorKind::Value, "threshold must be a number");
      sae_state_load_dead(*st, counts, threshold);
      return info.Env().Undefined();
    });
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    state_.reset();
    return info.Env().Undefined();
  }
};

void init(Napi::Env env, Napi::Object exports) { exports.Set("CpuSaeState", CpuSaeStateWrap::Init(env)); }

}  // namespace
SPX_REGISTER(cpu_sae_state, init);
}  // namespace sparsify
