// Module entry point. Every bindings/*.cpp registers its functions through SPX_REGISTER, so
// adding a kernel family never touches this file.
#include <napi.h>

#include "core/napi_util.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  sparsify::init_all(env, exports);
  return exports;
}

NODE_API_MODULE(sparsify, Init)
