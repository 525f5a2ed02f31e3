// N-API bindings (CUDA build only): Device probe of the CUDA build: cudaProbe, cudaFusedTopkMaxK.
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

// ---------------------------------------------------------------- probe
Napi::Value cuda_probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::ProbeResult r = cuda::probe();
  Napi::Object o = Napi::Object::New(env);
  o.Set("devices", r.devices);
  o.Set("runtimeVersion", r.runtime_version);
  if (r.driver_version > 0) o.Set("driverVersion", r.driver_version);
  if (!r.name.empty()) {
    o.Set("name", r.name);
    o.Set("computeCapability", std::to_string(r.cc_major) + "." + std::to_string(r.cc_minor));
    o.Set("multiprocessors", r.sm_count);
    o.Set("totalMemory", double(r.total_memory));
  }
  if (!r.error.empty()) o.Set("error", r.error);
  return o;
}

// cudaFusedTopkMaxK() -> number (0 without a device)
Napi::Value cuda_fused_max_k(const Napi::CallbackInfo& info) {
  try {
    return Napi::Number::New(info.Env(), double(cuda::fused_topk_max_k()));
  } catch (const cuda::CudaError&) {
    return Napi::Number::New(info.Env(), 0);
  }
}

void init(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "cudaProbe", cuda_probe, Accepts::AnyDeviceTensors);
  export_fn(env, exports, "cudaFusedTopkMaxK", cuda_fused_max_k, Accepts::AnyDeviceTensors, Audience::Tests);
}

}  // namespace
SPX_REGISTER(cuda_device, init);
}  // namespace sparsify
