// N-API surface of the threshold encoder on the device (CUDA build only; kernel:
// native/cuda/threshold_encode.cu; CPU twin: native/bindings/cpu/threshold_encode.cpp):
//   cudaThresholdEncode(w, x, b_dec|null) -> Promise<{acts [N,W], indices [N,W], counts [N]}>
// Same arguments and results as thresholdEncode; tensors may be on the host or the device, and
// the results are on x's device.
#include <memory>

#include "bindings/threshold_args.h"
#include "core/napi_util.h"
#include "cuda/threshold_device.h"

namespace sparsify {
namespace {

cuda::ThresholdEncodeArgs device_args(const ThresholdEncodeTensors& t) {
  cuda::ThresholdEncodeArgs a;
  a.w_enc = t.encW;
  a.gate_bias = t.gateBias;
  a.gate_threshold = t.gateThreshold;
  a.value_scale = t.valueScale;
  a.value_bias = t.valueBias;
  a.x = t.x;
  a.b_dec = t.bDec;
  return a;
}

Napi::Value cuda_threshold_encode(const Napi::CallbackInfo& info) {
  const cuda::ThresholdEncodeArgs a = device_args(read_threshold_encode_tensors(info, BindingSide::Cuda));
  auto out = std::make_shared<cuda::ThresholdEncodeResult>();
  return run_async(
      info.Env(), [a, out] { *out = cuda::threshold_encode(a); },
      [out](Napi::Env env) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        r.Set("acts", TensorHandle::Wrap(env, out->acts));
        r.Set("indices", TensorHandle::Wrap(env, out->indices));
        r.Set("counts", TensorHandle::Wrap(env, out->counts));
        return r;
      });
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "cudaThresholdEncode", cuda_threshold_encode, Accepts::AnyDeviceTensors);
}

}  // namespace
SPX_REGISTER(cuda_threshold_encode, init);
}  // namespace sparsify
