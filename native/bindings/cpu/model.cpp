// NativeModel: a transformer built from weight Tensors (see native/core/model.h).
//   new NativeModel(spec, weights)
//   .modules() -> [{name, width, inWidth, layer}]        transformers' module order
//   .forward(tokens, {outputs: string[], inputs: string[], splice: [name, Tensor][], logits})
//       -> Promise<{outputs: {name: Tensor}, inputs: {name: Tensor}, logits?: Tensor}>
// The whole forward is one job on a worker thread; the model's weights are held by shared_ptr so
// a concurrent dispose() never frees them under a running forward.
#include <memory>

#include "cpu/layers.h"
#include "core/model.h"
#include "core/napi_util.h"
#include "bindings/model_binding.h"

namespace sparsify {
namespace {

using namespace model;

std::vector<float> vec_f32(Napi::Object o, const char* key) {
  Tensor t = opt_tensor(o, key);
  std::vector<float> v;
  if (!t.defined()) return v;
  expect_float(t, key);
  if (t.ndim() != 1) fail(ErrorKind::Shape, std::string("weight '") + key + "' must be 1-D, got " + shape_str(t.shape));
  v.resize(size_t(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[size_t(i)] = load_as_f32(t.raw(), t.dtype, i);
  return v;
}

Family family_of(const std::string& s) {
  if (s == "gpt2") return Family::GPT2;
  if (s == "neox") return Family::NeoX;
  if (s == "llama") return Family::Llama;
  if (s == "gemma") return Family::Gemma;
  if (s == "gemma2") return Family::Gemma2;
  fail(ErrorKind::Value, "unknown model family '" + s + "'");
}

Norm norm_of(const std::string& s) {
  if (s == "layernorm") return Norm::LayerNorm;
  if (s == "rms") return Norm::RMS;
  if (s == "rms1p") return Norm::RMSOnePlus;
  fail(ErrorKind::Value, "unknown norm '" + s + "'");
}

Act act_of(const std::string& s) {
  if (s == "gelu_tanh") return Act::GeluTanh;
  if (s == "gelu") return Act::GeluErf;
  if (s == "gelu_fast") return Act::GeluFast;
  if (s == "quick_gelu") return Act::QuickGelu;
  if (s == "silu") return Act::Silu;
  if (s == "relu") return Act::Relu;
  fail(ErrorKind::Value, "unknown activation '" + s + "'");
}

Spec read_spec(Napi::Object o) {
  Spec s;
  s.family = family_of(opt_string(o, "family", ""));
  s.hidden = opt_int(o, "hidden", 0);
  s.layers = opt_int(o, "layers", 0);
  s.heads = opt_int(o, "heads", 0);
  s.kv_heads = opt_int(o, "kvHeads", 0);
  s.head_dim = opt_int(o, "headDim", 0);
  s.inter = opt_int(o, "inter", 0);
  s.vocab = opt_int(o, "vocab", 0);
  s.max_pos = opt_int(o, "maxPos", 0);
  s.norm = norm_of(opt_string(o, "norm", ""));
  s.eps = opt_number(o, "eps", 1e-5);
  s.act = act_of(opt_string(o, "act", ""));
  s.rotary_dim = opt_int(o, "rotaryDim", 0);
  Napi::Value f = o.Get("invFreq");
  if (f.IsArray()) {
    Napi::Array a = f.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) s.inv_freq.push_back(a.Get(i).As<Napi::Number>().FloatValue());
  }
  s.rope_attention_scaling = float(opt_number(o, "ropeAttentionScaling", 1.0));
  s.parallel_residual = opt_bool(o, "parallelResidual", false);
  s.attn_scale = float(opt_number(o, "attnScale", 1.0));
  s.scale_by_inverse_layer = opt_bool(o, "scaleByInverseLayer", false);
  s.attn_softcap = float(opt_number(o, "attnSoftcap", 0.0));
  s.final_softcap = float(opt_number(o, "finalSoftcap", 0.0));
  s.embed_scale = float(opt_number(o, "embedScale", 0.0));
  Napi::Value sw = o.Get("slidingWindow");
  if (sw.IsArray()) {
    Napi::Array a = sw.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) s.sliding_window.push_back(int64_t(a.Get(i).As<Napi::Number>().DoubleValue()));
  }
  return s;
}

Weights read_weights(Napi::Object o) {
  Weights w;
  w.embed = opt_tensor(o, "embed");
  w.pos_embed = opt_tensor(o, "posEmbed");
  w.lm_head = opt_tensor(o, "lmHead");
  w.final_w = vec_f32(o, "finalW");
  w.final_b = vec_f32(o, "finalB");
  Napi::Value lv = o.Get("layers");
  if (!lv.IsArray()) fail(ErrorKind::Value, "weights.layers must be an array");
  Napi::Array la = lv.As<Napi::Array>();
  for (uint32_t i = 0; i < la.Length(); ++i) {
    Napi::Object e = la.Get(i).As<Napi::Object>();
    LayerWeights L;
    L.qkv_w = opt_tensor(e, "qkvW");
    L.q_w = opt_tensor(e, "qW");
    L.k_w = opt_tensor(e, "kW");
    L.v_w = opt_tensor(e, "vW");
    L.o_w = opt_tensor(e, "oW");
    L.fc_w = opt_tensor(e, "fcW");
    L.gate_w = opt_tensor(e, "gateW");
    L.up_w = opt_tensor(e, "upW");
    L.down_w = opt_tensor(e, "downW");
    L.qkv_bf = vec_f32(e, "qkvB");
    L.q_bf = vec_f32(e, "qB");
    L.k_bf = vec_f32(e, "kB");
    L.v_bf = vec_f32(e, "vB");
    L.o_bf = vec_f32(e, "oB");
    L.fc_bf = vec_f32(e, "fcB");
    L.gate_bf = vec_f32(e, "gateB");
    L.up_bf = vec_f32(e, "upB");
    L.down_bf = vec_f32(e, "downB");
    L.ln1_w = vec_f32(e, "ln1W");
    L.ln1_b = vec_f32(e, "ln1B");
    L.ln2_w = vec_f32(e, "ln2W");
    L.ln2_b = vec_f32(e, "ln2B");
    L.pre_ff_w = vec_f32(e, "preFfW");
    L.post_ff_w = vec_f32(e, "postFfW");
    w.layers.push_back(std::move(L));
  }
  return w;
}

std::vector<std::string> string_list(Napi::Object o, const char* key) {
  std::vector<std::string> out;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return out;
  if (!v.IsArray()) fail(ErrorKind::Value, std::string("option '") + key + "' must be an array of names");
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    if (!e.IsString()) fail(ErrorKind::Value, std::string("option '") + key + "' must hold strings");
    out.push_back(e.As<Napi::String>().Utf8Value());
  }
  return out;
}

// The type tag that marks a JS object as a NativeModel (native_model_of checks it).
const napi_type_tag kModelTag = {0x8f3a1c5e2b7d4a69ULL, 0x1d6e9b0c4f2a7e35ULL};

int lookup(const Model& m, const std::string& name) {
  auto it = m.by_name.find(name);
  if (it == m.by_name.end()) fail(ErrorKind::Value, "unknown hookpoint '" + name + "'");
  return it->second;
}

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {InstanceMethod<&NativeModel::Modules>("modules"), InstanceMethod<&NativeModel::Forward>("forward"),
                        InstanceMethod<&NativeModel::Dispose>("dispose")});
  }

  explicit NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
    HostTensorsOnly host_only;  // the CPU model reads its weights on the host
    translate(info.Env(), [&] {
      Napi::Object spec = arg_object(info, 0, "spec");
      Napi::Object weights = arg_object(info, 1, "weights");
      model_ = build_model(read_spec(spec), read_weights(weights));
      napi_status st = napi_type_tag_object(info.Env(), info.This(), &kModelTag);
      if (st != napi_ok) fail(ErrorKind::Internal, "could not tag the NativeModel object");
      return 0;
    });
  }

  std::shared_ptr<Model> model_;  // reset by dispose(); read by native_model_of

 private:
  const Model& alive(Napi::Env env) {
    if (!model_) throw make_error(env, ErrorKind::Disposed, "model has been disposed");
    return *model_;
  }

  Napi::Value Modules(const Napi::CallbackInfo& info) {
    const Model& m = alive(info.Env());
    Napi::Env env = info.Env();
    Napi::Array a = Napi::Array::New(env, m.modules.size());
    for (size_t i = 0; i < m.modules.size(); ++i) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", m.modules[i].name);
      o.Set("width", double(m.modules[i].width));
      o.Set("inWidth", double(m.modules[i].in_width));
      o.Set("layer", double(m.modules[i].layer));
      a.Set(uint32_t(i), o);
    }
    return a;
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    model_.reset();
    return info.Env().Undefined();
  }

  Napi::Value Forward(const Napi::CallbackInfo& info) {
    HostTensorsOnly host_only;  // the CPU forward reads tokens and splices on the host
    return translate(info.Env(), [&]() -> Napi::Value {
      std::shared_ptr<Model> m = model_;
      if (!m) fail(ErrorKind::Disposed, "model has been disposed");
      auto req = std::make_shared<ForwardRequest>(read_forward_request(*m, info[0], info[1], false));
      validate_request(*m, *req);
      auto res = std::make_shared<ForwardResult>();
      return run_async(
          info.Env(), [m, req, res] { *res = forward(*m, *req); },
          [m, res](Napi::Env env) -> Napi::Value { return wrap_forward_result(env, *m, *res); });
    });
  }
};

// modelAttention(q [B*T, Hq*D], k [B*T, Hkv*D], v, {batch, heads, kvHeads, scale, softcap, window, reference})
// -> Promise<Tensor [B*T, Hq*D]>: the forward's attention kernel (or its reference), for tests.
Napi::Value model_attention(const Napi::CallbackInfo& info) {
  Tensor q = arg_tensor(info, 0, "q"), k = arg_tensor(info, 1, "k"), v = arg_tensor(info, 2, "v");
  Napi::Object o = arg_object(info, 3, "options");
  int64_t B = opt_int(o, "batch", 1), heads = opt_int(o, "heads", 1), kv = opt_int(o, "kvHeads", heads);
  float scale = float(opt_number(o, "scale", 1.0)), softcap = float(opt_number(o, "softcap", 0.0));
  int64_t window = opt_int(o, "window", 0);
  bool reference = opt_bool(o, "reference", false);
  for (const Tensor* t : {&q, &k, &v}) {
    expect_dtype(*t, DType::F32, "q/k/v");
    expect_ndim(*t, 2, "q/k/v");
  }
  SPX_CHECK(B > 0 && heads > 0 && kv > 0 && heads % kv == 0 && q.dim(0) % B == 0, Value, "attention: bad batch/heads");
  int64_t T = q.dim(0) / B, D = q.dim(1) / heads;
  SPX_CHECK(q.dim(1) == heads * D && k.dim(1) == kv * D && v.dim(1) == kv * D && k.dim(0) == q.dim(0) &&
                v.dim(0) == q.dim(0),
            Shape, "attention: q/k/v shapes disagree");
  auto out = std::make_shared<Tensor>(Tensor::empty({q.dim(0), heads * D}, DType::F32));
  return run_async(
      info.Env(),
      [=] {
        HeadLayout hq{q.data<float>(), heads * D, 0, D}, hk{k.data<float>(), kv * D, 0, D}, hv{v.data<float>(), kv * D, 0, D};
        (reference ? attention_reference : attention)(hq, hk, hv, out->data<float>(), B, T, heads, kv, D, scale, softcap,
                                                      window);
      },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

// modelActivation(x f32, name) -> Tensor: the forward's elementwise activation, for tests.
Napi::Value model_activation(const Napi::CallbackInfo& info) {
  Tensor x = arg_tensor(info, 0, "x");
  expect_dtype(x, DType::F32, "x");
  Act act = act_of(arg_string(info, 1, "activation"));
  Tensor y = Tensor::empty(x.shape, DType::F32);
  activation(act, x.data<float>(), y.data<float>(), x.numel());
  return TensorHandle::Wrap(info.Env(), y);
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "modelActivation", model_activation, Accepts::HostTensors, Audience::Tests);
  exports.Set("NativeModel", NativeModel::Init(env));
  export_fn(env, exports, "modelAttention", model_attention, Accepts::HostTensors, Audience::Tests);
}

}  // namespace

// Splice tensors of a CPU forward must be host tensors; a GPU forward takes either.
Tensor read_splice(Napi::Value v, bool any_device) {
  return any_device ? value_to_tensor_any_device(v, "splice tensor") : value_to_tensor(v, "splice tensor");
}

ForwardRequest read_forward_request(const Model& m, Napi::Value tokens, Napi::Value opts_v, bool any_device_splice) {
  ForwardRequest req;
  req.tokens = value_to_tensor(tokens, "tokens");
  Napi::Object opts = opts_v.IsObject() ? opts_v.As<Napi::Object>() : Napi::Object::New(tokens.Env());
  size_t n = m.modules.size();
  req.want_out.assign(n, 0);
  req.want_in.assign(n, 0);
  req.splice.assign(n, Tensor());
  for (auto& s : string_list(opts, "outputs")) req.want_out[size_t(lookup(m, s))] = 1;
  for (auto& s : string_list(opts, "inputs")) req.want_in[size_t(lookup(m, s))] = 1;
  req.logits = opt_bool(opts, "logits", false);
  Napi::Value rv = opts.Get("resume");
  if (rv.IsObject()) {
    Napi::Object r = rv.As<Napi::Object>();
    if (!r.Get("layer").IsNumber()) fail(ErrorKind::Value, "option 'resume' needs a numeric 'layer'");
    req.resume_layer = r.Get("layer").As<Napi::Number>().Int32Value();
    if (req.resume_layer < 0) fail(ErrorKind::Value, "resume layer must be >= 0, got " + std::to_string(req.resume_layer));
    req.resume_hidden = read_splice(r.Get("hidden"), any_device_splice);
  }
  Napi::Value sv = opts.Get("splice");
  if (sv.IsArray()) {
    Napi::Array a = sv.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Value ev = a.Get(i);
      if (!ev.IsArray() || ev.As<Napi::Array>().Length() != 2)
        fail(ErrorKind::Value, "option 'splice' must be a list of [name, Tensor] pairs");
      Napi::Array pair = ev.As<Napi::Array>();
      if (!pair.Get(0u).IsString()) fail(ErrorKind::Value, "splice names must be strings");
      std::string name = pair.Get(0u).As<Napi::String>().Utf8Value();
      req.splice[size_t(lookup(m, name))] = read_splice(pair.Get(1u), any_device_splice);
    }
  }
  return req;
}

Napi::Value wrap_forward_result(Napi::Env env, const Model& m, const ForwardResult& res) {
  Napi::Object o = Napi::Object::New(env);
  Napi::Object outs = Napi::Object::New(env), ins = Napi::Object::New(env);
  for (size_t i = 0; i < m.modules.size(); ++i) {
    if (res.out[i].defined()) outs.Set(m.modules[i].name, TensorHandle::Wrap(env, res.out[i]));
    if (res.in[i].defined()) ins.Set(m.modules[i].name, TensorHandle::Wrap(env, res.in[i]));
  }
  o.Set("outputs", outs);
  o.Set("inputs", ins);
  o.Set("layersRun", double(res.layers_run));
  if (res.logits.defined()) o.Set("logits", TensorHandle::Wrap(env, res.logits));
  return o;
}

std::shared_ptr<Model> native_model_of(Napi::Value v, const char* name) {
  bool tagged = false;
  if (v.IsObject()) napi_check_object_type_tag(v.Env(), v, &kModelTag, &tagged);
  if (!tagged) fail(ErrorKind::Value, std::string("argument '") + name + "' must be a NativeModel");
  NativeModel* nm = Napi::ObjectWrap<NativeModel>::Unwrap(v.As<Napi::Object>());
  if (!nm->model_) fail(ErrorKind::Disposed, "model has been disposed");
  return nm->model_;
}

SPX_REGISTER(model_ops, init);
}  // namespace sparsify
