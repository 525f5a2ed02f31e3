// N-API bindings of the GPU transformer forward (CUDA build only; see model_forward.h):
//   cudaModelCreate(nativeModel) -> Promise<CudaModel>  uploads the weights (the object has deviceBytes)
//   model.forward(tokens, {outputs, inputs, splice, logits})
//       -> Promise<{outputs, inputs, layersRun, logits?}>  as NativeModel.forward, device tensors
//   model.dispose()  frees the device weights now (GC frees them otherwise)
// Requests are parsed and validated on the JS thread by the same code as NativeModel.forward.
#include <memory>

#include "bindings/cuda/resident_object.h"
#include "bindings/model_binding.h"
#include "cuda/cuda_context.h"
#include "cuda/model_forward.h"
#include "core/napi_util.h"

namespace sparsify {
namespace {

struct ModelTraits {
  using Value = cuda::ResidentModel;
  static constexpr const char* kClass = "CudaModel";
  static constexpr const char* kFactory = "cudaModelCreate";
  static constexpr const char* kWhat = "the CUDA model";
  static constexpr napi_type_tag kTag = {0xd5a83f1e6c0b2947ULL, 0x2f6e91b4a7c35d08ULL};
};
using CudaModel = cuda_binding::ResidentObject<ModelTraits>;
using Holder = CudaModel::Holder;

Napi::Value cuda_model_create(const Napi::CallbackInfo& info) {
  std::shared_ptr<const model::Model> m = native_model_of(info[0], "nativeModel");
  auto res = std::make_shared<Holder>();
  return run_async(
      info.Env(), [=] { *res = cuda::make_resident_model(m); },
      [res](Napi::Env env) -> Napi::Value {
        Napi::Object o = CudaModel::New(env, *res);
        o.Set("deviceBytes", double((*res)->device_bytes));
        return o;
      });
}

Napi::Value cuda_model_forward(const Napi::CallbackInfo& info) {
  Holder h = CudaModel::Of(info);
  const model::Model& m = *h->host;
  auto req = std::make_shared<model::ForwardRequest>(read_forward_request(m, info[0], info[1], true));
  // device object methods accept device tensors, but token ids are range-checked (and uploaded) on the
  // host by validate_request: a device `tokens` tensor would be read on the host, so refuse it.
  if (req->tokens.device() != Device::CPU)
    fail(ErrorKind::Device, "argument 'tokens' is a cuda tensor; CudaModel.forward checks token ids on the host: "
                            "pass a cpu tensor (`await tokens.to('cpu')`, as LanguageModel.forward does)");
  model::validate_request(m, *req);
  auto res = std::make_shared<model::ForwardResult>();
  return run_async(
      info.Env(), [h, req, res] { *res = cuda::resident_forward(*h, *req); },
      [h, res](Napi::Env env) -> Napi::Value { return wrap_forward_result(env, *h->host, *res); });
}

void init(Napi::Env env, Napi::Object exports) {
  CudaModel::Register(env, {CudaModel::InstanceMethod<&CudaModel::Call<cuda_model_forward>>("forward")});
  export_fn(env, exports, "cudaModelCreate", cuda_model_create, Accepts::AnyDeviceTensors);
}

}  // namespace
SPX_REGISTER(cuda_model_ops, init);
}  // namespace sparsify
