// The start-up self-test of the CUDA backend (self_test.cu): each kernel family on a small random
// problem against a host reference, once per process, before the first `device: 'cuda'` use.
#pragma once
#include <string>

namespace sparsify {
namespace cuda {

struct SelfTestResult {
  bool ok = true;
  std::string kernel;  // the failing family ("gemm", "encoder", ...) when !ok
  std::string error;   // what differed, or the CUDA error
  double ms = 0;
};
// Runs once; later calls return the first result.
const SelfTestResult& self_test();

}  // namespace cuda
}  // namespace sparsify
