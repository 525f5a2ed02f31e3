// matmul(a [M,K] f32, b, {bTrans, bias?, c?}) -> Promise<Tensor [M,N] f32>; matmulReference
// likewise (plain double-accumulating loop). `c` [M,N] f32 is added to the product (gemm's
// accumulate mode, on a copy: the input tensor is never written). Also gemmKernelName(),
// gemmInfo(), gemmAvailableKernels() and gemmForceKernels(name) to see /
// pin the kernel set. Used by tests, bench/ and `sparsify info --native`.
#include <string>
#include <vector>

#include "cpu/gemm.h"
#include "core/napi_util.h"

namespace sparsify {
namespace {

Napi::Value matmul_impl(const Napi::CallbackInfo& info, bool reference) {
  Tensor a = arg_tensor(info, 0, "a");
  Tensor b = arg_tensor(info, 1, "b");
  Napi::Object opts = info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(info.Env());
  bool b_trans = opt_bool(opts, "bTrans", false);
  Tensor bias = opt_tensor(opts, "bias");
  Tensor c0 = opt_tensor(opts, "c");
  expect_dtype(a, DType::F32, "a");
  expect_ndim(a, 2, "a");
  expect_float(b, "b");
  expect_ndim(b, 2, "b");
  int64_t M = a.dim(0), K = a.dim(1);
  int64_t N = b_trans ? b.dim(0) : b.dim(1);
  int64_t bk = b_trans ? b.dim(1) : b.dim(0);
  if (bk != K)
    fail(ErrorKind::Shape, "matmul: a is " + shape_str(a.shape) + " but b is " + shape_str(b.shape) +
                               (b_trans ? " (transposed)" : ""));
  if (bias.defined()) {
    expect_dtype(bias, DType::F32, "bias");
    expect_shape(bias, {N}, "bias");
  }
  if (c0.defined()) {
    expect_dtype(c0, DType::F32, "c");
    expect_shape(c0, {M, N}, "c");
  }
  bool accumulate = c0.defined();
  auto out = std::make_shared<Tensor>(accumulate ? c0.clone() : Tensor::empty({M, N}, DType::F32));
  return run_async(
      info.Env(),
      [a, b, bias, out, M, N, K, b_trans, reference, accumulate] {
        GemmB gb{b.raw(), b.dtype, b.dim(1), b_trans};
        const float* bp = bias.defined() ? bias.data<float>() : nullptr;
        if (reference)
          gemm_reference(M, N, K, a.data<float>(), K, gb, out->data<float>(), N, accumulate, bp);
        else
          gemm(M, N, K, a.data<float>(), K, gb, out->data<float>(), N, accumulate, bp);
      },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

Napi::Value matmul(const Napi::CallbackInfo& info) { return matmul_impl(info, false); }
Napi::Value matmul_reference(const Napi::CallbackInfo& info) { return matmul_impl(info, true); }

// matmulPacked(a, b, {bTrans, n0?, n1?, bias?, c?}): packs op(b) with gemm_pack_b, then
// gemm_prepacked over columns [n0, n1) -> [M, n1-n0]. Exercises the prepacked path (tests, bench).
Napi::Value matmul_packed(const Napi::CallbackInfo& info) {
  Tensor a = arg_tensor(info, 0, "a");
  Tensor b = arg_tensor(info, 1, "b");
  Napi::Object opts = info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(info.Env());
  bool b_trans = opt_bool(opts, "bTrans", false);
  expect_dtype(a, DType::F32, "a");
  expect_ndim(a, 2, "a");
  expect_float(b, "b");
  expect_ndim(b, 2, "b");
  int64_t M = a.dim(0), K = a.dim(1);
  int64_t N = b_trans ? b.dim(0) : b.dim(1);
  if ((b_trans ? b.dim(1) : b.dim(0)) != K)
    fail(ErrorKind::Shape, "matmulPacked: a is " + shape_str(a.shape) + " but b is " + shape_str(b.shape) +
                               (b_trans ? " (transposed)" : ""));
  int64_t n0 = opt_int(opts, "n0", 0), n1 = opt_int(opts, "n1", N);
  if (n0 < 0 || n1 < n0 || n1 > N)
    fail(ErrorKind::Shape, "matmulPacked: column range [" + std::to_string(n0) + ", " + std::to_string(n1) +
                               ") is outside b's " + std::to_string(N) + " columns");
  if (n0 % 16 != 0) fail(ErrorKind::Value, "matmulPacked: n0 = " + std::to_string(n0) + " is not a multiple of 16");
  Tensor bias = opt_tensor(opts, "bias");
  Tensor c0 = opt_tensor(opts, "c");
  if (bias.defined()) {
    expect_dtype(bias, DType::F32, "bias");
    expect_shape(bias, {n1 - n0}, "bias");
  }
  if (c0.defined()) {
    expect_dtype(c0, DType::F32, "c");
    expect_shape(c0, {M, n1 - n0}, "c");
  }
  bool accumulate = c0.defined();
  auto out = std::make_shared<Tensor>(accumulate ? c0.clone() : Tensor::empty({M, n1 - n0}, DType::F32));
  return run_async(
      info.Env(),
      [a, b, bias, out, M, N, K, n0, n1, b_trans, accumulate] {
        GemmPackedB packed = gemm_pack_b(N, K, GemmB{b.raw(), b.dtype, b.dim(1), b_trans});
        gemm_prepacked(M, n0, n1, a.data<float>(), K, packed, out->data<float>(), n1 - n0, accumulate,
                       bias.defined() ? bias.data<float>() : nullptr);
      },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

Napi::Value kernel_name(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), gemm_kernel_name()); }

Napi::Value force_kernels(const Napi::CallbackInfo& info) {
  gemm_force_kernels(arg_string(info, 0, "name"));
  return Napi::String::New(info.Env(), gemm_kernel_name());
}

Napi::Value available_kernels(const Napi::CallbackInfo& info) {
  std::vector<std::string> names = gemm_available_kernels();
  Napi::Array out = Napi::Array::New(info.Env(), names.size());
  for (size_t i = 0; i < names.size(); ++i) out.Set(uint32_t(i), names[i]);
  return out;
}

Napi::Value info_object(const Napi::CallbackInfo& info) {
  GemmInfo g = gemm_info();
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("kernels", g.kernels);
  o.Set("mr", g.mr);
  o.Set("nr", g.nr);
  o.Set("mc", double(g.mc));
  o.Set("kc", double(g.kc));
  o.Set("nc", double(g.nc));
  o.Set("l1d", double(g.l1d));
  o.Set("l2", double(g.l2));
  o.Set("l3", double(g.l3));
  o.Set("cacheSource", g.cache_source);
  return o;
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "matmul", matmul);
  export_fn(env, exports, "matmulReference", matmul_reference);
  export_fn(env, exports, "matmulPacked", matmul_packed);
  export_fn(env, exports, "gemmKernelName", kernel_name);
  export_fn(env, exports, "gemmForceKernels", force_kernels);
  export_fn(env, exports, "gemmAvailableKernels", available_kernels);
  export_fn(env, exports, "gemmInfo", info_object);
}

}  // namespace
SPX_REGISTER(gemm_ops, init);
}  // namespace sparsify
