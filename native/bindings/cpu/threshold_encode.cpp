// N-API surface of the threshold encoder (ReLU / JumpReLU / gated latents, cpu/threshold_encode.h):
//   thresholdEncode(w, x, b_dec|null)          -> Promise<{acts [N,W], indices [N,W], counts [N]}>
//   thresholdEncodeReference(w, x, b_dec|null) -> Float64Array [N*M] (dense, sync; tests)
// w = { encW [M,D], gateBias [M], gateThreshold? [M], valueScale? [M], valueBias [M] } (float32).
// The encoder input is x - b_dec when b_dec is given. Rows are padded to W = max(1, max count)
// slots: slot j < counts[n] holds a kept latent (latent order), the rest hold act 0, index 0.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "bindings/threshold_args.h"
#include "core/napi_util.h"
#include "core/parallel.h"
#include "cpu/threshold_encode.h"

namespace sparsify {
namespace {

ThresholdWeights weights_view(const ThresholdEncodeTensors& a) {
  ThresholdWeights w;
  w.M = a.encW.dim(0);
  w.D = a.encW.dim(1);
  w.W_enc = a.encW.data<float>();
  w.gate_bias = a.gateBias.data<float>();
  w.gate_threshold = a.gateThreshold.defined() ? a.gateThreshold.data<float>() : nullptr;
  w.value_scale = a.valueScale.defined() ? a.valueScale.data<float>() : nullptr;
  w.value_bias = a.valueBias.data<float>();
  return w;
}

// x - b_dec (or x itself), after rejecting NaN / Inf in x.
std::vector<float> encoder_input(const ThresholdEncodeTensors& a) {
  const int64_t N = a.x.dim(0), D = a.x.dim(1);
  const float* x = a.x.data<float>();
  std::vector<float> xin(size_t(N * D));
  for (int64_t i = 0; i < N * D; ++i)
    if (!std::isfinite(x[i]))
      fail(ErrorKind::Value, "x contains NaN or Inf (first at flat index " + std::to_string(i) + ")");
  const float* b = a.bDec.defined() ? a.bDec.data<float>() : nullptr;
  parallel_for(N, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t n = r0; n < r1; ++n)
      for (int64_t d = 0; d < D; ++d) xin[size_t(n * D + d)] = b ? x[n * D + d] - b[d] : x[n * D + d];
  });
  return xin;
}

Napi::Value threshold_encode_js(const Napi::CallbackInfo& info) {
  const ThresholdEncodeTensors a = read_threshold_encode_tensors(info, BindingSide::Cpu);
  const int64_t N = a.x.dim(0);
  auto acts = std::make_shared<Tensor>();
  auto idx = std::make_shared<Tensor>();
  auto counts = std::make_shared<Tensor>(Tensor::empty({N}, DType::I32));
  return run_async(
      info.Env(),
      [a, N, acts, idx, counts] {
        std::vector<float> xin = encoder_input(a);
        ThresholdCsr csr = threshold_encode(weights_view(a), N, xin.data());
        int64_t width = 1;
        for (int64_t n = 0; n < N; ++n) width = std::max(width, csr.row_ptr[size_t(n + 1)] - csr.row_ptr[size_t(n)]);
        *acts = Tensor::empty({N, width}, DType::F32);
        *idx = Tensor::empty({N, width}, DType::I32);
        float* av = acts->data<float>();
        int32_t* iv = idx->data<int32_t>();
        int32_t* cv = counts->data<int32_t>();
        parallel_for(N, 256, [&](int64_t r0, int64_t r1) {
          for (int64_t n = r0; n < r1; ++n) {
            const int64_t b = csr.row_ptr[size_t(n)], c = csr.row_ptr[size_t(n + 1)] - b;
            cv[n] = int32_t(c);
            for (int64_t j = 0; j < width; ++j) {
              av[n * width + j] = j < c ? csr.vals[size_t(b + j)] : 0.f;
              iv[n * width + j] = j < c ? csr.idx[size_t(b + j)] : 0;
            }
          }
        });
      },
      [acts, idx, counts](Napi::Env env) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        r.Set("acts", TensorHandle::Wrap(env, *acts));
        r.Set("indices", TensorHandle::Wrap(env, *idx));
        r.Set("counts", TensorHandle::Wrap(env, *counts));
        return r;
      });
}

Napi::Value threshold_encode_reference_js(const Napi::CallbackInfo& info) {
  const ThresholdEncodeTensors a = read_threshold_encode_tensors(info, BindingSide::Cpu);
  std::vector<float> xin = encoder_input(a);
  std::vector<double> f = threshold_encode_reference(weights_view(a), a.x.dim(0), xin.data());
  Napi::Float64Array out = Napi::Float64Array::New(info.Env(), f.size());
  std::copy(f.begin(), f.end(), out.Data());
  return out;
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "thresholdEncode", threshold_encode_js);
  export_fn(env, exports, "thresholdEncodeReference", threshold_encode_reference_js);
}

}  // namespace
SPX_REGISTER(threshold_encode_ops, init);
}  // namespace sparsify
