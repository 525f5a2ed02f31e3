// N-API bindings (CUDA build only): Dense GEMM on the device (CPU twin: native/bindings/cpu/gemm.cpp): cudaMatmul, cudaBench.
// GPU failures reject with DeviceError (codes: ERR_SPARSIFY_CUDA_OOM, _STICKY, _UNAVAILABLE, ERR_SPARSIFY_DEVICE).
#include <cuda_runtime_api.h>

#include <cmath>
#include <functional>
#include <memory>

#include "bindings/cuda/cuda_binding_util.h"
#include "cuda/cuda_check.h"
#include "cuda/cuda_context.h"
#include "cuda/cuda_ops.h"
#include "core/napi_util.h"

namespace sparsify {
namespace {
using namespace cuda_binding;

// ---------------------------------------------------------------- GEMM
// cudaMatmul(a [M,K], b, {bTrans, bias?, computeDtype?}) -> Promise<[M,N] f32>
Napi::Value cuda_matmul(const Napi::CallbackInfo& info) {
  Tensor a = arg_tensor(info, 0, "a");
  Tensor b = arg_tensor(info, 1, "b");
  Napi::Object opts = opts_at(info, 2);
  bool b_trans = opt_bool(opts, "bTrans", false);
  Tensor bias = opt_tensor(opts, "bias");
  DType compute = compute_dtype(opts);
  expect_float(a, "a");
  expect_ndim(a, 2, "a");
  expect_float(b, "b");
  expect_ndim(b, 2, "b");
  int64_t K = a.dim(1), N = b_trans ? b.dim(0) : b.dim(1), bk = b_trans ? b.dim(1) : b.dim(0);
  if (bk != K)
    fail(ErrorKind::Shape, "cudaMatmul: a is " + shape_str(a.shape) + " but b is " + shape_str(b.shape) +
                               (b_trans ? " (transposed)" : ""));
  if (bias.defined()) {
    expect_float(bias, "bias");
    expect_shape(bias, {N}, "bias");
  }
  // The grid limits of gemm.cu (gridDim.y = ceil(M/128), transpose grid.y = ceil(K/32),
  // both <= 65535) checked here instead of failing the launch.
  if ((a.dim(0) + 127) / 128 > 65535 || (K + 31) / 32 > 65535)
    fail(ErrorKind::Value, "cudaMatmul: a has " + std::to_string(a.dim(0)) + " rows and K = " + std::to_string(K) +
                               "; this kernel supports up to 8388480 rows and K <= 2097120");
  auto out = std::make_shared<Tensor>();
  return run_async(
      info.Env(), [=] { *out = cuda::matmul(a, b, b_trans, bias, compute); },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

// ---------------------------------------------------------------- benchmarks
// cudaBench(kind, {m,n,k,bytes,iters}) -> Promise<number ms>
Napi::Value cuda_bench(const Napi::CallbackInfo& info) {
  std::string kind = arg_string(info, 0, "kind");
  Napi::Object o = opts_at(info, 1);
  int64_t m = opt_int(o, "m", 0), n = opt_int(o, "n", 0), k = opt_int(o, "k", 0), d = opt_int(o, "d", 0);
  int64_t bytes = opt_int(o, "bytes", 0);
  int iters = int(opt_int(o, "iters", 10));
  if (kind != "gemm" && kind != "copy" && kind != "encode")
    fail(ErrorKind::Value, "cudaBench: kind must be 'gemm', 'copy' or 'encode', got '" + kind + "'");
  if (m < 0 || n < 0 || k < 0 || d < 0 || bytes < 0 || iters < 1) fail(ErrorKind::Value, "cudaBench: sizes must be >= 0");
  // Empty sizes would launch an empty grid (a device error), k > m an invalid top-k.
  if (kind == "gemm" && (m < 1 || n < 1 || k < 1 || (m + 127) / 128 > 65535))
    fail(ErrorKind::Value, "cudaBench gemm: m, n, k must be >= 1 (m <= 8388480)");
  if (kind == "encode" && (n < 1 || d < 1 || m < 1 || k < 1 || k > m || k > 8192 || m >= (int64_t(1) << 31) ||
                           n * k >= (int64_t(1) << 31)))
    fail(ErrorKind::Value, "cudaBench encode: needs n, d, m >= 1 and 1 <= k <= min(m, 8192)");
  if (kind == "copy" && bytes < 1) fail(ErrorKind::Value, "cudaBench copy: bytes must be >= 1");
  auto ms = std::make_shared<double>(0);
  return run_async(
      info.Env(),
      [=] {
        if (kind == "gemm") *ms = cuda::bench_gemm_ms(m, n, k, iters);
        else if (kind == "copy") *ms = cuda::bench_copy_ms(bytes, iters);
        else *ms = cuda::bench_encode_ms(n, d, m, k, iters);
      },
      [ms](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *ms); });
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "cudaMatmul", cuda_matmul, Accepts::AnyDeviceTensors, Audience::Tests);
  export_fn(env, exports, "cudaBench", cuda_bench, Accepts::AnyDeviceTensors, Audience::Tests);
}

}  // namespace
SPX_REGISTER(cuda_gemm, init);
}  // namespace sparsify
