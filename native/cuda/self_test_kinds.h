// Start-up check of the SAELens kinds' device kernels (self_test_kinds.cu), for the CUDA
// self-test to call as one more kernel family ("threshold").
#pragma once
#include <string>

namespace sparsify {
namespace cuda {

// The fused threshold encode (JumpReLU rule, shapes off the 32-tiles) against a host loop in
// double: "" when it agrees, else what differed. Throws CudaError on a CUDA failure.
std::string check_threshold_kinds();

}  // namespace cuda
}  // namespace sparsify
