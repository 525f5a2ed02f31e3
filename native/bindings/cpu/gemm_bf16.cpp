// The bf16-operand GEMM (cpu/gemm_bf16.h) for tests, benchmarks and `sparsify info --native`:
//   matmulBf16(a [M,K] f32, b, {bTrans, bias?, n0?, n1?}) -> Promise<Tensor [M, n1-n0]>
//       bf16(a) · bf16(op(b))[:, n0:n1] (+ bias) through the packed path the encoder uses
//   matmulBf16Reference(a, b, {bTrans, bias?})       -> the double-accumulating reference
//   gemmBf16Path()                                   -> 'avx512_bf16' | 'widen-avx512' | 'widen-avx2' | 'widen-portable'
//   testing.gemmBf16ForceWiden(on)                   -> the path now in use
#include <string>
#include <vector>

#include "cpu/gemm_bf16.h"
#include "core/napi_util.h"

namespace sparsify {
namespace {

Napi::Value matmul_bf16_impl(const Napi::CallbackInfo& info, bool reference) {
  const char* fn = reference ? "matmulBf16Reference" : "matmulBf16";
  Tensor a = arg_tensor(info, 0, "a");
  Tensor b = arg_tensor(info, 1, "b");
  Napi::Object opts = info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(info.Env());
  const bool b_trans = opt_bool(opts, "bTrans", false);
  expect_dtype(a, DType::F32, "a");
  expect_ndim(a, 2, "a");
  expect_float(b, "b");
  expect_ndim(b, 2, "b");
  const int64_t M = a.dim(0), K = a.dim(1);
  const int64_t N = b_trans ? b.dim(0) : b.dim(1);
  if ((b_trans ? b.dim(1) : b.dim(0)) != K)
    fail(ErrorKind::Shape, std::string(fn) + ": a is " + shape_str(a.shape) + " but b is " + shape_str(b.shape) +
                               (b_trans ? " (transposed)" : ""));
  const int64_t n0 = reference ? 0 : opt_int(opts, "n0", 0), n1 = reference ? N : opt_int(opts, "n1", N);
  if (n0 < 0 || n1 < n0 || n1 > N)
    fail(ErrorKind::Shape, std::string(fn) + ": column range [" + std::to_string(n0) + ", " + std::to_string(n1) +
                               ") is outside b's " + std::to_string(N) + " columns");
  if (n0 % 16 != 0) fail(ErrorKind::Value, std::string(fn) + ": n0 = " + std::to_string(n0) + " is not a multiple of 16");
  Tensor bias = opt_tensor(opts, "bias");
  if (bias.defined()) {
    expect_dtype(bias, DType::F32, "bias");
    expect_shape(bias, {n1 - n0}, "bias");
  }
  if (a.device() != Device::CPU || b.device() != Device::CPU || (bias.defined() && bias.device() != Device::CPU))
    fail(ErrorKind::Device, std::string(fn) + ": a, b and bias must be CPU tensors");
  auto out = std::make_shared<Tensor>(Tensor::empty({M, n1 - n0}, DType::F32));
  return run_async(
      info.Env(),
      [a, b, bias, out, M, N, K, n0, n1, b_trans, reference] {
        const GemmB gb{b.raw(), b.dtype, b.dim(1), b_trans};
        const float* bp = bias.defined() ? bias.data<float>() : nullptr;
        if (reference) {
          gemm_bf16_reference(M, N, K, a.data<float>(), K, gb, out->data<float>(), N, bp);
          return;
        }
        std::vector<uint16_t> ab(size_t(std::max<int64_t>(1, M * K)));
        round_to_bf16(M * K, a.data<float>(), ab.data());
        GemmBf16PackedB packed = gemm_bf16_pack_b(N, K, gb);
        gemm_bf16_prepacked(M, n0, n1, ab.data(), K, packed, out->data<float>(), n1 - n0, bp);
      },
      [out](Napi::Env env) -> Napi::Value { return TensorHandle::Wrap(env, *out); });
}

Napi::Value matmul_bf16(const Napi::CallbackInfo& info) { return matmul_bf16_impl(info, false); }
Napi::Value matmul_bf16_reference(const Napi::CallbackInfo& info) { return matmul_bf16_impl(info, true); }

Napi::Value path_name(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), gemm_bf16_path_name()); }

Napi::Value force_widen(const Napi::CallbackInfo& info) {
  gemm_bf16_force_widen(arg_bool(info, 0, "on"));
  return Napi::String::New(info.Env(), gemm_bf16_path_name());
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "matmulBf16", matmul_bf16);
  export_fn(env, exports, "matmulBf16Reference", matmul_bf16_reference, Accepts::HostTensors, Audience::Tests);
  export_fn(env, exports, "gemmBf16Path", path_name);
  export_fn(env, exports, "gemmBf16ForceWiden", force_widen, Accepts::HostTensors, Audience::Tests);
}

}  // namespace
SPX_REGISTER(gemm_bf16_ops, init);
}  // namespace sparsify
