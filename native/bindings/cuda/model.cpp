// N-API bindings of the GPU transformer forward (CUDA build only; see model_forward.h):
//   cudaModelCreate(nativeModel) -> Promise<{_native, deviceBytes}>  uploads the weights
//   cudaModelForward(model, tokens, {outputs, inputs, splice, logits})
//       -> Promise<{outputs, inputs, layersRun, logits?}>  as NativeModel.forward, device tensors
//   cudaModelDispose(model)  frees the device weights now (GC frees them otherwise)
// Requests are parsed and validated on the JS thread by the same code as NativeModel.forward.
#include <memory>

#include "bindings/model_binding.h"
#include "cuda/cuda_context.h"
#include "cuda/model_forward.h"
#include "core/napi_util.h"

namespace sparsify {
namespace {

using Holder = std::shared_ptr<cuda::ResidentModel>;

Holder& holder_arg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Value v = info[i];
  if (!v.IsObject()) fail(ErrorKind::Value, "argument 'model' must be an object from cudaModelCreate");
  Napi::Value ext = v.As<Napi::Object>().Get("_native");
  if (!ext.IsExternal()) fail(ErrorKind::Value, "argument 'model' must be an object from cudaModelCreate");
  Holder* h = ext.As<Napi::External<Holder>>().Data();
  if (!*h) fail(ErrorKind::Disposed, "the CUDA model was disposed");
  return *h;
}

Napi::Value cuda_model_create(const Napi::CallbackInfo& info) {
  std::shared_ptr<const model::Model> m = native_model_of(info[0], "nativeModel");
  auto res = std::make_shared<Holder>();
  return run_async(
      info.Env(), [=] { *res = cuda::make_resident_model(m); },
      [res](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("_native", Napi::External<Holder>::New(env, new Holder(*res), [](Napi::Env, Holder* h) { delete h; }));
        o.Set("deviceBytes", double((*res)->device_bytes));
        return o;
      });
}

Napi::Value cuda_model_forward(const Napi::CallbackInfo& info) {
  Holder h = holder_arg(info, 0);
  const model::Model& m = *h->host;
  auto req = std::make_shared<model::ForwardRequest>(read_forward_request(m, info[1], info[2], true));
  // cuda* functions accept device tensors, but token ids are range-checked (and uploaded) on the
  // host by validate_request: a device `tokens` tensor would be read on the host, so refuse it.
  if (req->tokens.device() != Device::CPU)
    fail(ErrorKind::Device, "argument 'tokens' is a cuda tensor; cudaModelForward checks token ids on the host: "
                            "pass a cpu tensor (`await tokens.to('cpu')`, as LanguageModel.forward does)");
  model::validate_request(m, *req);
  auto res = std::make_shared<model::ForwardResult>();
  return run_async(
      info.Env(), [h, req, res] { *res = cuda::resident_forward(*h, *req); },
      [h, res](Napi::Env env) -> Napi::Value { return wrap_forward_result(env, *h->host, *res); });
}

Napi::Value cuda_model_dispose(const Napi::CallbackInfo& info) {
  Napi::Value v = info[0];
  if (v.IsObject()) {
    Napi::Value ext = v.As<Napi::Object>().Get("_native");
    if (ext.IsExternal()) ext.As<Napi::External<Holder>>().Data()->reset();  // running forwards keep their copy
  }
  return info.Env().Undefined();
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "cudaModelCreate", cuda_model_create, Accepts::AnyDeviceTensors);
  export_fn(env, exports, "cudaModelForward", cuda_model_forward, Accepts::AnyDeviceTensors);
  export_fn(env, exports, "cudaModelDispose", cuda_model_dispose, Accepts::AnyDeviceTensors);
}

}  // namespace
SPX_REGISTER(cuda_model_ops, init);
}  // namespace sparsify
