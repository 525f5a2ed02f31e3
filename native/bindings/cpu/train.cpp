// Small ops the trainer needs between the model forward and the sparse-coder step, so that
// activations never leave native memory:
//   trainGatherRows(x [N,D] f32, idx int32 [n]) -> Promise<[n,D]>   (exclude_tokens masking)
//   trainRowSlice(x [N,...], begin, end) -> view of rows [begin,end) (micro-batches; shares memory)
//   trainTotalVariance(y [N,D] f32) -> Promise<number>  sum_{n,d} (y - mean_n y)^2, float64 sums
#include <cmath>
#include <vector>

#include "bindings/row_gather_args.h"
#include "core/napi_util.h"
#include "cpu/row_gather.h"
#include "core/parallel.h"

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

Napi::Value total_variance(const Napi::CallbackInfo& info) {
  Tensor y = arg_tensor(info, 0, "y");
  expect_dtype(y, DType::F32, "y");
  expect_ndim(y, 2, "y");
  if (y.device() != Device::CPU) fail(ErrorKind::Device, "trainTotalVariance: CPU tensors only");
  auto result = std::make_shared<double>(0.0);
  return run_async(
      info.Env(),
      [y, result] {
        const int64_t N = y.dim(0), D = y.dim(1);
        const float* p = y.data<float>();
        std::vector<double> mean(size_t(D), 0.0), ss(size_t(D), 0.0);
        // Two passes per column block: the mean, then the centred sum of squares (stable).
        parallel_for(D, 16, [&](int64_t b, int64_t e) {
          for (int64_t n = 0; n < N; n++)
            for (int64_t d = b; d < e; d++) mean[size_t(d)] += p[n * D + d];
          for (int64_t d = b; d < e; d++) mean[size_t(d)] /= double(N);
          for (int64_t n = 0; n < N; n++)
            for (int64_t d = b; d < e; d++) {
              double c = p[n * D + d] - mean[size_t(d)];
              ss[size_t(d)] += c * c;
            }
        });
        double t = 0;
        for (double v : ss) t += v;
        *result = t;
      },
      [result](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *result); });
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "trainGatherRows", gather_rows_js);
  export_fn(env, exports, "trainRowSlice", row_slice);
  export_fn(env, exports, "trainTotalVariance", total_variance);
}

}  // namespace
SPX_REGISTER(train_ops, init);
}  // namespace sparsify
