// testing.cudaSelfTestKinds() -> {ok, error?}: the SAELens kinds' start-up check
// (native/cuda/self_test_kinds.cu), for tests until the start-up self-test calls it.
#include "core/napi_util.h"
#include "cuda/self_test_kinds.h"

namespace sparsify {
namespace {

Napi::Value cuda_self_test_kinds(const Napi::CallbackInfo& info) {
  const std::string e = cuda::check_threshold_kinds();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("ok", e.empty());
  if (!e.empty()) o.Set("error", e);
  return o;
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "cudaSelfTestKinds", cuda_self_test_kinds, Accepts::HostTensors, Audience::Tests);
}

}  // namespace
SPX_REGISTER(cuda_self_test_kinds, init);
}  // namespace sparsify
