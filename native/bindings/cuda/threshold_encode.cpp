// N-API surface of the threshold encoder on the device (CUDA build only; kernel:
// native/cuda/threshold_encode.cu; CPU twin: native/bindings/cpu/threshold_encode.cpp):
//   cudaThresholdEncode(w, x, b_dec|null) -> Promise<{acts [N,W], indices [N,W], counts [N]}>
// Same arguments and results as thresholdEncode; tensors may be on the host or the device, and
// the results are on x's device.
#include <memory>
#include <string>

#include "core/napi_util.h"
#include "cuda/threshold_device.h"

namespace sparsify {
namespace {

void expect_vector(const Tensor& t, int64_t M, const char* name) {
  expect_dtype(t, DType::F32, name);
  expect_shape(t, {M}, name);
}

cuda::ThresholdEncodeArgs read_args(const Napi::CallbackInfo& info) {
  if (!info[0].IsObject()) fail(ErrorKind::Value, "weights must be an object of tensors");
  Napi::Object o = info[0].As<Napi::Object>();
  cuda::ThresholdEncodeArgs a;
  a.w_enc = opt_tensor(o, "encW");
  a.gate_bias = opt_tensor(o, "gateBias");
  a.gate_threshold = opt_tensor(o, "gateThreshold");
  a.value_scale = opt_tensor(o, "valueScale");
  a.value_bias = opt_tensor(o, "valueBias");
  if (!a.w_enc.defined() || !a.gate_bias.defined() || !a.value_bias.defined())
    fail(ErrorKind::Value, "threshold encoder weights need encW, gateBias and valueBias");
  expect_dtype(a.w_enc, DType::F32, "W_enc");
  expect_ndim(a.w_enc, 2, "W_enc");
  const int64_t M = a.w_enc.dim(0), D = a.w_enc.dim(1);
  if (M >= (int64_t(1) << 31)) fail(ErrorKind::Shape, "W_enc has >= 2^31 latents");
  expect_vector(a.gate_bias, M, "gate bias");
  expect_vector(a.value_bias, M, "value bias");
  if (a.gate_threshold.defined()) expect_vector(a.gate_threshold, M, "threshold");
  if (a.value_scale.defined()) expect_vector(a.value_scale, M, "value scale");
  a.x = arg_tensor(info, 1, "x");
  expect_dtype(a.x, DType::F32, "x");
  if (a.x.ndim() != 2 || a.x.dim(1) != D)
    fail(ErrorKind::Shape, "x must be [tokens, " + std::to_string(D) + "], got " + shape_str(a.x.shape));
  a.b_dec = arg_optional_tensor(info, 2, "b_dec");
  if (a.b_dec.defined()) expect_vector(a.b_dec, D, "b_dec");
  return a;
}

Napi::Value cuda_threshold_encode(const Napi::CallbackInfo& info) {
  cuda::ThresholdEncodeArgs a = read_args(info);
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
