// N-API surface of the sparse coder and optimizer kernels. Weights travel as a JS object
//   { encW [M,D], encB [M], W_dec? [M,D], b_dec [D], W_skip? [D,D] }   (all float32)
// and each entry point is one coarse async call (a whole training step is one call).
//
//   saeEncode(w, x, {k, groupmax, transcode, preActs})            -> {acts, indices, preActs?}
//   saeDecode(W_dec, b_dec|null, acts, indices)                   -> Tensor
//   saeStep(w, grads|null, x, y|null, opts)                       -> {fvu, auxkLoss, multiTopkFvu, loss, ...}
//   saeInitBiases(w, x, y|null, transcode)                        -> undefined (writes b_dec / encB)
//   saeNormalizeDecoder(W_dec), saeProjectDecoderGrad(W_dec, g)   -> undefined
//   saeReference(w, frozen|null, x, y|null, opts)                 -> float64 results (sync; tests)
//   optimStep(entries)                                            -> undefined (tests: the CPU optimizers'
//                                                                    kernels, which CpuSaeState.apply runs)
//   optimReference(kind, arrays, hyper)                           -> float64 results (sync; tests)
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cpu/optim.h"
#include "cpu/sae.h"
#include "core/coder_spec.h"
#include "bindings/sae_args.h"
#include "core/napi_util.h"
#include "core/parallel.h"

namespace sparsify {
namespace {

struct WeightsArg {
  Tensor encW, encB, W_dec, b_dec, W_skip;
  SaeWeights view() const {
    SaeWeights w;
    w.M = encW.dim(0);
    w.D = encW.dim(1);
    w.W_enc = encW.data<float>();
    w.b_enc = encB.data<float>();
    w.W_dec = W_dec.defined() ? W_dec.data<float>() : nullptr;
    w.b_dec = b_dec.data<float>();
    w.W_skip = W_skip.defined() ? W_skip.data<float>() : nullptr;
    return w;
  }
};

void expect_f32_shape(const Tensor& t, const std::vector<int64_t>& shape, const char* name) {
  expect_dtype(t, DType::F32, name);
  expect_shape(t, shape, name);
  if (t.device() != Device::CPU) fail(ErrorKind::Device, std::string(name) + " must be a CPU tensor");
}

// Kernels that write into a tensor refuse read-only (memory-mapped file) storage.
void expect_writable(const Tensor& t, const std::string& name) {
  if (t.defined() && t.storage && !t.storage->owned_heap && t.device() == Device::CPU)
    fail(ErrorKind::Value, name + " is read-only (memory-mapped from a file); clone it before writing to it");
}

void expect_weights_writable(const WeightsArg& w, const std::string& what);

WeightsArg read_weights(Napi::Value v, const char* what) {
  if (!v.IsObject()) fail(ErrorKind::Value, std::string(what) + " must be an object of tensors");
  Napi::Object o = v.As<Napi::Object>();
  WeightsArg w;
  w.encW = opt_tensor(o, "encW");
  w.encB = opt_tensor(o, "encB");
  w.b_dec = opt_tensor(o, "b_dec");
  w.W_dec = opt_tensor(o, "W_dec");
  w.W_skip = opt_tensor(o, "W_skip");
  if (!w.encW.defined() || !w.encB.defined() || !w.b_dec.defined())
    fail(ErrorKind::Value, std::string(what) + " needs encoder.weight, encoder.bias and b_dec");
  expect_dtype(w.encW, DType::F32, "encoder.weight");
  expect_ndim(w.encW, 2, "encoder.weight");
  const int64_t M = w.encW.dim(0), D = w.encW.dim(1);
  expect_f32_shape(w.encW, {M, D}, "encoder.weight");
  expect_f32_shape(w.encB, {M}, "encoder.bias");
  expect_f32_shape(w.b_dec, {D}, "b_dec");
  if (w.W_dec.defined()) expect_f32_shape(w.W_dec, {M, D}, "W_dec");
  if (w.W_skip.defined()) expect_f32_shape(w.W_skip, {D, D}, "W_skip");
  return w;
}

void expect_weights_writable(const WeightsArg& w, const std::string& what) {
  expect_writable(w.encW, what + " encoder.weight");
  expect_writable(w.encB, what + " encoder.bias");
  expect_writable(w.W_dec, what + " W_dec");
  expect_writable(w.b_dec, what + " b_dec");
  expect_writable(w.W_skip, what + " W_skip");
}


SaeSpec read_spec(Napi::Object o, int64_t M) {
  SaeSpec s;
  s.k = opt_int(o, "k", 0);
  s.groupmax = opt_bool(o, "groupmax", false);
  s.transcode = opt_bool(o, "transcode", false);
  s.multi_topk = opt_bool(o, "multiTopk", false);
  s.bf16 = read_compute_bf16(o);
  check_coder_spec(M, s.k, s.groupmax, s.multi_topk);
  return s;
}


Napi::Object obj_of(Napi::Value v) { return v.IsObject() ? v.As<Napi::Object>() : Napi::Object(); }

// ------------------------------------------------------------------ encode / decode
Napi::Value sae_encode_js(const Napi::CallbackInfo& info) {
  WeightsArg w = read_weights(info[0], "weights");
  const int64_t M = w.encW.dim(0), D = w.encW.dim(1);
  Tensor x = read_coder_input(info[1], D, "x");
  Napi::Object o = arg_object(info, 2, "options");
  SaeSpec s = read_spec(o, M);
  const bool want_pre = opt_bool(o, "preActs", false);
  const int64_t N = x.dim(0);
  auto acts = std::make_shared<Tensor>(Tensor::empty({N, s.k}, DType::F32));
  auto idx = std::make_shared<Tensor>(Tensor::empty({N, s.k}, DType::I32));
  auto pre = std::make_shared<Tensor>();
  if (want_pre) *pre = Tensor::empty({N, M}, DType::F32);
  return run_async(
      info.Env(),
      [w, x, s, acts, idx, pre, N, D] {
        check_finite(x.data<float>(), x.numel(), "x");
        SaeWeights wv = w.view();
        std::vector<float> xin;
        const float* xp = sae_encoder_input(wv, s, N, x.data<float>(), xin);
        EncodeOut eo;
        eo.acts = acts->data<float>();
        eo.idx = idx->data<int32_t>();
        eo.pre = pre->defined() ? pre->data<float>() : nullptr;
        SaeSpec s1 = s;
        s1.multi_topk = false;
        sae_encode(wv, s1, N, xp, eo);
      },
      [acts, idx, pre](Napi::Env env) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        r.Set("acts", TensorHandle::Wrap(env, *acts));
        r.Set("indices", TensorHandle::Wrap(env, *idx));
        if (pre->defined()) r.Set("preActs", TensorHandle::Wrap(env, *pre));
        return r;
      });
}

Napi::Value sae_decode_js(const Napi::CallbackInfo& info) {
  Tensor W = arg_tensor(info, 0, "W_dec");
  Tensor b = arg_optional_tensor(info, 1, "b_dec");
  Tensor acts = arg_tensor(info, 2, "topActs");
  Tensor idx = arg_tensor(info, 3, "topIndices");
  expect_dtype(W, DType::F32, "W_dec");
  expect_ndim(W, 2, "W_dec");
  const int64_t M = W.dim(0), D = W.dim(1);
  if (b.defined()) expect_f32_shape(b, {D}, "b_dec");
  expect_dtype(acts, DType::F32, "topActs");
  expect_dtype(idx, DType::I32, "topIndices");
  expect_ndim(acts, 2, "topActs");
  if (idx.shape != acts.shape)
    fail(ErrorKind::Shape, "topIndices " + shape_str(idx.shape) + " must have the shape of topActs " + shape_str(acts.shape));
  const int64_t N = acts.dim(0), k = acts.dim(1);
  auto out = std::make_shared<Tensor>(Tensor::empty({N, D}, DType::F32));
  return run_async(
      info.Env(),
      [W, b, acts, idx, out, N, k, D, M] {
        sae_decode(N, k, D, M, acts.data<float>(), idx.data<int32_t>(), W.data<float>(),
                   b.defined() ? b.data<float>() : nullptr, out->data<float>());
      },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

// ------------------------------------------------------------------ training step
Napi::Value sae_step_js(const Napi::CallbackInfo& info) {
  WeightsArg w = read_weights(info[0], "weights");
  const int64_t M = w.encW.dim(0), D = w.encW.dim(1);
  if (!w.W_dec.defined()) fail(ErrorKind::Value, "this coder has no decoder (loaded with decoder: false)");
  const bool with_grads = !(info[1].IsUndefined() || info[1].IsNull());
  WeightsArg g;
  if (with_grads) {
    g = read_weights(info[1], "grads");
    expect_weights_writable(g, "grads");
  }
  if (with_grads && (!g.W_dec.defined() || g.encW.dim(0) != M || g.encW.dim(1) != D ||
                     g.W_skip.defined() != w.W_skip.defined()))
    fail(ErrorKind::Shape, "grads do not match the coder's parameters");
  Tensor x = read_coder_input(info[2], D, "x");
  Tensor y;
  if (!(info[3].IsUndefined() || info[3].IsNull())) {
    y = read_coder_input(info[3], D, "y");
    if (y.dim(0) != x.dim(0))
      fail(ErrorKind::Shape, "y has " + std::to_string(y.dim(0)) + " rows but x has " + std::to_string(x.dim(0)));
  }
  Napi::Object o = arg_object(info, 4, "options");
  SaeSpec s = read_spec(o, M);
  auto dead = read_dead_mask(o.Get("deadMask"), M);
  const double auxk_alpha = opt_number(o, "auxkAlpha", 0.0);
  const double loss_scale = opt_number(o, "lossScale", 1.0);
  const double tv = opt_number(o, "totalVariance", -1.0);
  const bool normalize = opt_bool(o, "normalizeDecoder", false);
  const bool outputs = opt_bool(o, "outputs", false);
  const bool force_sparse_aux = opt_bool(o, "forceSparseAux", false);
  if (normalize) expect_writable(w.W_dec, "W_dec");
  if (!std::isfinite(auxk_alpha) || auxk_alpha < 0) fail(ErrorKind::Value, "auxkAlpha must be a finite number >= 0");
  if (!std::isfinite(loss_scale)) fail(ErrorKind::Value, "lossScale must be finite");
  Tensor did_fire = opt_tensor(o, "didFire");
  if (did_fire.defined()) {
    expect_dtype(did_fire, DType::I32, "didFire");
    expect_shape(did_fire, {M}, "didFire");
    expect_writable(did_fire, "didFire");
  }
  const int64_t N = x.dim(0);
  if (N < 1) fail(ErrorKind::Shape, "x must have at least one row");
  const int64_t kr = s.multi_topk ? 4 * s.k : s.k;
  struct Out {
    Tensor sae_out, acts, idx;
    SaeLosses L;
  };
  auto res = std::make_shared<Out>();
  if (outputs) {
    res->sae_out = Tensor::empty({N, D}, DType::F32);
    res->acts = Tensor::empty({N, kr}, DType::F32);
    res->idx = Tensor::empty({N, kr}, DType::I32);
  }
  return run_async(
      info.Env(),
      [w, g, with_grads, x, y, s, dead, auxk_alpha, loss_scale, tv, normalize, did_fire, res, N, M, D, outputs,
       force_sparse_aux] {
        check_finite(x.data<float>(), x.numel(), "x");
        if (y.defined()) check_finite(y.data<float>(), y.numel(), "y");
        if (normalize) sae_normalize_decoder(M, D, w.W_dec.data<float>());
        SaeStepArgs a;
        a.N = N;
        a.x = x.data<float>();
        a.y = y.defined() ? y.data<float>() : nullptr;
        a.dead = dead ? dead->data() : nullptr;
        a.auxk_alpha = auxk_alpha;
        a.loss_scale = loss_scale;
        a.total_variance = tv;
        a.force_sparse_aux = force_sparse_aux;
        a.did_fire = did_fire.defined() ? did_fire.data<int32_t>() : nullptr;
        if (outputs) {
          a.sae_out = res->sae_out.data<float>();
          a.latent_acts = res->acts.data<float>();
          a.latent_idx = res->idx.data<int32_t>();
        }
        SaeGrads gr;
        if (with_grads) {
          gr.W_enc = g.encW.data<float>();
          gr.b_enc = g.encB.data<float>();
          gr.W_dec = g.W_dec.data<float>();
          gr.b_dec = g.b_dec.data<float>();
          gr.W_skip = g.W_skip.defined() ? g.W_skip.data<float>() : nullptr;
        }
        res->L = sae_forward_backward(w.view(), s, a, with_grads ? &gr : nullptr);
      },
      [res](Napi::Env env) -> Napi::Value { return wrap_step_result(env, res->L, res->sae_out, res->acts, res->idx); });
}

Napi::Value sae_init_biases_js(const Napi::CallbackInfo& info) {
  WeightsArg w = read_weights(info[0], "weights");
  const int64_t D = w.encW.dim(1);
  Tensor x = read_coder_input(info[1], D, "x");
  Tensor y;
  if (!(info[2].IsUndefined() || info[2].IsNull())) y = read_coder_input(info[2], D, "y");
  const bool transcode = arg_bool(info, 3, "transcode");
  if (x.dim(0) < 1) fail(ErrorKind::Shape, "x must have at least one row");
  if (y.defined() && y.dim(0) < 1) fail(ErrorKind::Shape, "y must have at least one row");
  expect_writable(w.b_dec, "b_dec");
  if (transcode) expect_writable(w.encB, "encoder.bias");
  return run_async(
      info.Env(),
      [w, x, y, transcode] {
        check_finite(x.data<float>(), x.numel(), "x");
        if (y.defined()) check_finite(y.data<float>(), y.numel(), "y");
        sae_init_biases(w.view(), transcode, x.dim(0), x.data<float>(), y.defined() ? y.dim(0) : 0,
                        y.defined() ? y.data<float>() : nullptr, w.encB.data<float>(), w.b_dec.data<float>());
      },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
}

Napi::Value sae_normalize_decoder_js(const Napi::CallbackInfo& info) {
  Tensor W = arg_tensor(info, 0, "W_dec");
  expect_dtype(W, DType::F32, "W_dec");
  expect_ndim(W, 2, "W_dec");
  expect_writable(W, "W_dec");
  return run_async(
      info.Env(), [W] { sae_normalize_decoder(W.dim(0), W.dim(1), W.data<float>()); },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
}

Napi::Value sae_project_decoder_grad_js(const Napi::CallbackInfo& info) {
  Tensor W = arg_tensor(info, 0, "W_dec");
  Tensor g = arg_tensor(info, 1, "grad");
  expect_dtype(W, DType::F32, "W_dec");
  expect_ndim(W, 2, "W_dec");
  expect_f32_shape(g, W.shape, "grad");
  expect_writable(g, "grad");
  return run_async(
      info.Env(), [W, g] { sae_project_decoder_grad(W.dim(0), W.dim(1), W.data<float>(), g.data<float>()); },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
}

// ------------------------------------------------------------------ float64 reference (tests)
Napi::Value f64_array(Napi::Env env, const std::vector<double>& v) {
  Napi::Float64Array a = Napi::Float64Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

Napi::Value sae_reference_js(const Napi::CallbackInfo& info) {
  WeightsArg w = read_weights(info[0], "weights");
  const int64_t M = w.encW.dim(0), D = w.encW.dim(1);
  if (!w.W_dec.defined()) fail(ErrorKind::Value, "the reference needs W_dec");
  WeightsArg f;
  const bool has_frozen = !(info[1].IsUndefined() || info[1].IsNull());
  if (has_frozen) {
    f = read_weights(info[1], "frozen");
    if (f.encW.shape != w.encW.shape || f.W_dec.defined() != w.W_dec.defined() || f.W_skip.defined() != w.W_skip.defined())
      fail(ErrorKind::Shape, "frozen weights must have the shapes of the weights");
  }
  Tensor x = read_coder_input(info[2], D, "x");
  Tensor y;
  if (!(info[3].IsUndefined() || info[3].IsNull())) y = read_coder_input(info[3], D, "y");
  Napi::Object o = arg_object(info, 4, "options");
  SaeSpec s = read_spec(o, M);
  auto dead = read_dead_mask(o.Get("deadMask"), M);
  SaeWeights fv = has_frozen ? f.view() : SaeWeights();
  SaeRefResult R = sae_reference(w.view(), has_frozen ? &fv : nullptr, s, x.dim(0), x.data<float>(),
                                 y.defined() ? y.data<float>() : nullptr, dead ? dead->data() : nullptr,
                                 opt_number(o, "auxkAlpha", 0.0), opt_number(o, "totalVariance", -1.0),
                                 opt_bool(o, "grads", false));
  Napi::Env env = info.Env();
  Napi::Object r = Napi::Object::New(env);
  r.Set("fvu", R.losses.fvu);
  r.Set("auxkLoss", R.losses.auxk);
  r.Set("multiTopkFvu", R.losses.multi_topk_fvu);
  r.Set("loss", R.losses.loss);
  r.Set("saeOut", f64_array(env, R.sae_out));
  r.Set("preActs", f64_array(env, R.pre));
  r.Set("acts", f64_array(env, R.acts));
  Napi::Int32Array ids = Napi::Int32Array::New(env, R.idx.size());
  std::copy(R.idx.begin(), R.idx.end(), ids.Data());
  r.Set("indices", ids);
  if (!R.g_W_enc.empty()) {
    Napi::Object g = Napi::Object::New(env);
    g.Set("encoder.weight", f64_array(env, R.g_W_enc));
    g.Set("encoder.bias", f64_array(env, R.g_b_enc));
    g.Set("W_dec", f64_array(env, R.g_W_dec));
    g.Set("b_dec", f64_array(env, R.g_b_dec));
    if (!R.g_W_skip.empty()) g.Set("W_skip", f64_array(env, R.g_W_skip));
    r.Set("grads", g);
  }
  return r;
}

// ------------------------------------------------------------------ optimizers
// entries: [{kind, param, grad, state: Tensor[], project?, lr, momentum?, ckp1?, beta1?, beta2?,
//            eps?, step?, nesterov?, weightDecay?, nsSteps?}]. Per entry: optionally remove the
// gradient component parallel to each decoder row, update, zero the gradient.
struct OptEntry {
  std::string kind;
  Tensor p, g;
  std::vector<Tensor> st;
  bool project = false;
  double lr = 0, momentum = 0, ckp1 = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, wd = 0;
  int64_t step = 1;
  bool nesterov = true;
  int ns_steps = 5;
};

Napi::Value optim_step_js(const Napi::CallbackInfo& info) {
  if (!info[0].IsArray()) fail(ErrorKind::Value, "argument 'entries' must be an array");
  Napi::Array arr = info[0].As<Napi::Array>();
  auto entries = std::make_shared<std::vector<OptEntry>>();
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Object o = obj_of(arr.Get(i));
    if (o.IsEmpty()) fail(ErrorKind::Value, "entries[" + std::to_string(i) + "] must be an object");
    OptEntry e;
    e.kind = opt_string(o, "kind", "");
    e.p = opt_tensor(o, "param");
    e.g = opt_tensor(o, "grad");
    if (!e.p.defined() || !e.g.defined()) fail(ErrorKind::Value, "optimizer entry needs param and grad");
    expect_dtype(e.p, DType::F32, "param");
    expect_f32_shape(e.g, e.p.shape, "grad");
    expect_writable(e.p, "param");
    expect_writable(e.g, "grad");
    Napi::Value sv = o.Get("state");
    if (sv.IsArray()) {
      Napi::Array sa = sv.As<Napi::Array>();
      for (uint32_t j = 0; j < sa.Length(); ++j) {
        Tensor t = value_to_tensor(sa.Get(j), "state");
        expect_f32_shape(t, e.p.shape, "optimizer state");
        expect_writable(t, "optimizer state");
        e.st.push_back(t);
      }
    }
    e.project = opt_bool(o, "project", false);
    e.lr = opt_number(o, "lr", 0);
    e.momentum = opt_number(o, "momentum", 0);
    e.ckp1 = opt_number(o, "ckp1", 0);
    e.beta1 = opt_number(o, "beta1", 0.9);
    e.beta2 = opt_number(o, "beta2", 0.999);
    e.eps = opt_number(o, "eps", 1e-8);
    e.step = opt_int(o, "step", 1);
    e.nesterov = opt_bool(o, "nesterov", true);
    e.wd = opt_number(o, "weightDecay", 0);
    e.ns_steps = int(opt_int(o, "nsSteps", 5));
    const size_t need = e.kind == "adam" ? 2 : (e.kind == "signum" || e.kind == "muon") ? 1 : 0;
    if (need == 0) fail(ErrorKind::Value, "unknown optimizer kind '" + e.kind + "'");
    if (e.st.size() != need) fail(ErrorKind::Value, e.kind + " needs " + std::to_string(need) + " state tensors");
    if (e.kind == "muon" && e.p.ndim() != 2) fail(ErrorKind::Shape, "muon updates 2-D parameters only");
    if (e.project && e.p.ndim() != 2) fail(ErrorKind::Shape, "decoder projection needs a 2-D parameter");
    if (!std::isfinite(e.lr)) fail(ErrorKind::Value, "lr must be finite");
    entries->push_back(std::move(e));
  }
  return run_async(
      info.Env(),
      [entries] {
        for (OptEntry& e : *entries) {
          OptUpdate u;
          u.kind = e.kind == "signum" ? OptKind::Signum : e.kind == "adam" ? OptKind::Adam : OptKind::Muon;
          u.p = e.p.data<float>();
          u.g = e.g.data<float>();
          u.s0 = e.st[0].data<float>();
          u.s1 = e.st.size() > 1 ? e.st[1].data<float>() : nullptr;
          u.rows = e.p.ndim() == 2 ? e.p.dim(0) : 1;
          u.cols = e.p.ndim() == 2 ? e.p.dim(1) : e.p.numel();
          u.project = e.project;
          u.lr = e.lr;
          u.momentum = e.momentum;
          u.ckp1 = e.ckp1;
          u.beta1 = e.beta1;
          u.beta2 = e.beta2;
          u.eps = e.eps;
          u.step = e.step;
          u.nesterov = e.nesterov;
          u.weight_decay = e.wd;
          u.ns_steps = e.ns_steps;
          optimizer_update(u);
        }
      },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
}

std::vector<double> f64_arg(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    fail(ErrorKind::Value, std::string("'") + key + "' must be a Float64Array");
  auto a = v.As<Napi::Float64Array>();
  return std::vector<double>(a.Data(), a.Data() + a.ElementLength());
}

// optimReference(kind, {p, g, s0, s1?, rows?, cols?}, hyper) -> {p, g, s0, s1?} (float64 copies)
Napi::Value optim_reference_js(const Napi::CallbackInfo& info) {
  std::string kind = arg_string(info, 0, "kind");
  Napi::Object a = arg_object(info, 1, "arrays");
  Napi::Object h = arg_object(info, 2, "hyper");
  std::vector<double> p = f64_arg(a, "p"), g = f64_arg(a, "g"), s0 = f64_arg(a, "s0");
  std::vector<double> s1;
  const int64_t n = int64_t(p.size());
  if (int64_t(g.size()) != n || int64_t(s0.size()) != n) fail(ErrorKind::Shape, "p, g, s0 must have equal lengths");
  if (kind == "signum") {
    signum_sf_step_ref(n, p.data(), s0.data(), g.data(), opt_number(h, "lr", 0), opt_number(h, "momentum", 0.95),
                       opt_number(h, "ckp1", 1));
  } else if (kind == "adam") {
    s1 = f64_arg(a, "s1");
    if (int64_t(s1.size()) != n) fail(ErrorKind::Shape, "s1 must have the length of p");
    adam_step_ref(n, p.data(), g.data(), s0.data(), s1.data(), opt_number(h, "lr", 0), opt_number(h, "beta1", 0.9),
                  opt_number(h, "beta2", 0.999), opt_number(h, "eps", 1e-8), opt_int(h, "step", 1));
  } else if (kind == "muon") {
    const int64_t rows = opt_int(h, "rows", 0), cols = opt_int(h, "cols", 0);
    if (rows * cols != n) fail(ErrorKind::Shape, "rows*cols must equal the length of p");
    muon_step_ref(rows, cols, p.data(), g.data(), s0.data(), opt_number(h, "lr", 0), opt_number(h, "momentum", 0.95),
                  opt_bool(h, "nesterov", true), opt_number(h, "weightDecay", 0.1), int(opt_int(h, "nsSteps", 5)));
  } else {
    fail(ErrorKind::Value, "unknown optimizer kind '" + kind + "'");
  }
  Napi::Env env = info.Env();
  Napi::Object r = Napi::Object::New(env);
  r.Set("p", f64_array(env, p));
  r.Set("g", f64_array(env, g));
  r.Set("s0", f64_array(env, s0));
  if (!s1.empty()) r.Set("s1", f64_array(env, s1));
  return r;
}

// zeroTensors([Tensor...]): memset to 0 (grad buffers), on the JS thread (a memset).
Napi::Value zero_tensors_js(const Napi::CallbackInfo& info) {
  if (!info[0].IsArray()) fail(ErrorKind::Value, "argument 'tensors' must be an array");
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<Tensor> ts;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    ts.push_back(value_to_tensor(arr.Get(i), "tensors[i]"));
    expect_writable(ts.back(), "tensors[" + std::to_string(i) + "]");
  }
  for (Tensor& t : ts) std::memset(t.raw(), 0, t.nbytes());
  return info.Env().Undefined();
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "zeroTensors", zero_tensors_js);
  export_fn(env, exports, "saeEncode", sae_encode_js);
  export_fn(env, exports, "saeDecode", sae_decode_js);
  export_fn(env, exports, "saeStep", sae_step_js);
  export_fn(env, exports, "saeInitBiases", sae_init_biases_js);
  export_fn(env, exports, "saeNormalizeDecoder", sae_normalize_decoder_js, Accepts::HostTensors, Audience::Tests);
  export_fn(env, exports, "saeProjectDecoderGrad", sae_project_decoder_grad_js, Accepts::HostTensors, Audience::Tests);
  export_fn(env, exports, "saeReference", sae_reference_js, Accepts::HostTensors, Audience::Tests);
  export_fn(env, exports, "optimStep", optim_step_js, Accepts::HostTensors, Audience::Tests);
  export_fn(env, exports, "optimReference", optim_reference_js, Accepts::HostTensors, Audience::Tests);
}

}  // namespace
SPX_REGISTER(sae_ops, init);
}  // namespace sparsify
