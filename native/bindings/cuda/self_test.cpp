// cudaSelfTest() -> {ok, kernel?, error?, ms}: the start-up self-test (native/cuda/self_test.cu),
// run once per process on the first call (small problems; well under a second on a GPU).
#include "core/napi_util.h"
#include "cuda/self_test.h"

namespace sparsify {
namespace {

Napi::Value cuda_self_test(const Napi::CallbackInfo& info) {
  const cuda::SelfTestResult& r = cuda::self_test();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("ok", r.ok);
  if (!r.ok) {
    o.Set("kernel", r.kernel);
    o.Set("error", r.error);
  }
  o.Set("ms", r.ms);
  return o;
}

void init(Napi::Env env, Napi::Object exports) { export_fn(env, exports, "cudaSelfTest", cuda_self_test); }

}  // namespace
SPX_REGISTER(cuda_self_test, init);
}  // namespace sparsify
