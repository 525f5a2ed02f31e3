// cudaGemmPath() -> {wgmma: boolean, why: string}: the dense GEMM kernel this device uses
// (gemm_path.h). Runs the one-time wgmma self-check if no GEMM has run yet (milliseconds).
#include "cuda/cuda_context.h"
#include "cuda/gemm_path.h"
#include "core/napi_util.h"

namespace sparsify {
namespace {

Napi::Value cuda_gemm_path(const Napi::CallbackInfo& info) {
  cuda::GemmPath p;
  {
    cuda::Session ses;
    p = cuda::gemm_path(ses.stream());
  }
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("wgmma", p.wgmma);
  o.Set("why", p.why);
  return o;
}

void init(Napi::Env env, Napi::Object exports) { export_fn(env, exports, "cudaGemmPath", cuda_gemm_path, Accepts::AnyDeviceTensors, Audience::Tests); }

}  // namespace
SPX_REGISTER(cuda_gemm_ops, init);
}  // namespace sparsify
