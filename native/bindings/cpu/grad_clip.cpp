// N-API surface of global gradient-norm clipping (cpu/grad_clip.h), for tests; the product path
// is the state's optimizer step (CpuSaeState.optimizerStep({maxGradNorm})):
//   gradClip([Tensor f32 ...], maxNorm)                  -> Promise<number> (the norm before; tensors scaled in place)
//   gradClipReference([Float64Array ...], maxNorm)       -> {norm, grads: Float64Array[]} (float64, sync)
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/napi_util.h"
#include "cpu/grad_clip.h"

namespace sparsify {
namespace {

double max_norm_arg(const Napi::CallbackInfo& info) {
  const double m = arg_number(info, 1, "maxNorm");
  if (!(std::isfinite(m) && m > 0)) fail(ErrorKind::Value, "maxNorm must be a finite number > 0, got " + std::to_string(m));
  return m;
}

Napi::Array array_arg(const Napi::CallbackInfo& info, const char* name) {
  if (info.Length() < 1 || !info[0].IsArray()) fail(ErrorKind::Value, std::string("argument '") + name + "' must be an array");
  return info[0].As<Napi::Array>();
}

Napi::Value grad_clip_js(const Napi::CallbackInfo& info) {
  Napi::Array arr = array_arg(info, "grads");
  auto ts = std::make_shared<std::vector<Tensor>>();
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    const std::string name = "grads[" + std::to_string(i) + "]";
    Tensor t = value_to_tensor(arr.Get(i), name.c_str());
    expect_dtype(t, DType::F32, name.c_str());
    if (t.storage && !t.storage->owned_heap) fail(ErrorKind::Value, name + " is read-only (memory-mapped from a file)");
    ts->push_back(t);
  }
  const double max_norm = max_norm_arg(info);
  auto norm = std::make_shared<double>(0.0);
  return run_async(
      info.Env(),
      [ts, max_norm, norm] {
        double ss = 0;
        for (Tensor& t : *ts) ss += grad_sum_squares(t.numel(), t.data<float>());
        *norm = std::sqrt(ss);
        const double coef = grad_clip_coefficient(*norm, max_norm);
        if (coef < 1.0)
          for (Tensor& t : *ts) grad_scale(t.numel(), t.data<float>(), float(coef));
      },
      [norm](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *norm); });
}

Napi::Value grad_clip_reference_js(const Napi::CallbackInfo& info) {
  Napi::Array arr = array_arg(info, "grads");
  std::vector<std::vector<double>> grads;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value v = arr.Get(i);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
      fail(ErrorKind::Value, "grads[" + std::to_string(i) + "] must be a Float64Array");
    auto a = v.As<Napi::Float64Array>();
    grads.emplace_back(a.Data(), a.Data() + a.ElementLength());
  }
  const double norm = clip_grad_norm_ref(grads, max_norm_arg(info));
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env, grads.size());
  for (size_t i = 0; i < grads.size(); ++i) {
    Napi::Float64Array a = Napi::Float64Array::New(env, grads[i].size());
    std::copy(grads[i].begin(), grads[i].end(), a.Data());
    out.Set(uint32_t(i), a);
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("norm", Napi::Number::New(env, norm));
  r.Set("grads", out);
  return r;
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "gradClip", grad_clip_js, Accepts::HostTensors, Audience::Tests);
  export_fn(env, exports, "gradClipReference", grad_clip_reference_js, Accepts::HostTensors, Audience::Tests);
}

}  // namespace
SPX_REGISTER(grad_clip_ops, init);
}  // namespace sparsify
