// Small ops the trainer needs between the model forward and the sparse-coder step, so that
// activations never leave native memory:
//   trainGatherRows(x [N,D] f32, idx int32 [n]) -> Promise<[n,D]>   (exclude_tokens masking)
//   trainRowSlice(x [N,...], begin, end) -> view of rows [begin,end) (micro-batches; shares memory; host or device x)
//   trainTotalVariance(y [N,D] f32) -> Promise<number>  sum_{n,d} (y - mean_n y)^2, float64 sums
#include "bindings/row_gather_args.h"
#include "core/napi_util.h"
#include "cpu/row_gather.h"
#include "cpu/sae_state.h"

namespace sparsify {
namespace {

Napi::Value gather_rows_js(const Napi::CallbackInfo& info) {
  Tensor x = arg_tensor(info, 0, "x");
  Tensor idx = arg_tensor(info, 1, "idx");
  check_gather_args(x, idx, "trainGatherRows", [&] {
    if (x.device() != Device::CPU || idx.device() != Device::CPU)
      fail(ErrorKind::Device, "trainGatherRows: CPU tensors only");
  });
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [x, idx, out] { *out = sparsify::gather_rows(x, idx); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

Napi::Value row_slice(const Napi::CallbackInfo& info) {
  Tensor x = arg_tensor(info, 0, "x");
  int64_t b = arg_int(info, 1, "begin"), e = arg_int(info, 2, "end");
  if (x.ndim() < 1) fail(ErrorKind::Shape, "trainRowSlice: x must have at least one dimension");
  if (b < 0 || e < b || e > x.dim(0))
    fail(ErrorKind::Value, "trainRowSlice: rows [" + std::to_string(b) + ", " + std::to_string(e) +
                               ") are outside x " + shape_str(x.shape));
  return TensorHandle::Wrap(info.Env(), x.rows(b, e));
}

Napi::Value total_variance_js(const Napi::CallbackInfo& info) {
  Tensor y = arg_tensor(info, 0, "y");
  expect_dtype(y, DType::F32, "y");
  expect_ndim(y, 2, "y");
  if (y.device() != Device::CPU) fail(ErrorKind::Device, "trainTotalVariance: CPU tensors only");
  auto result = std::make_shared<double>(0.0);
  return run_async(
      info.Env(),
      [y, result] { *result = total_variance(y.dim(0), y.dim(1), y.data<float>()); },
      [result](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *result); });
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "trainGatherRows", gather_rows_js);
  export_fn(env, exports, "trainRowSlice", row_slice, Accepts::AnyDeviceTensors);  // a view: any device
  export_fn(env, exports, "trainTotalVariance", total_variance_js);
}

}  // namespace
SPX_REGISTER(train_ops, init);
}  // namespace sparsify
