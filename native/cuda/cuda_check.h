// CUDA error handling. Every runtime call goes through CUDA_CHECK, every launch is followed by
// CUDA_CHECK_LAUNCH(). A failure throws CudaError (a NativeError of kind Device) whose message
// carries cudaGetErrorName + cudaGetErrorString + file:line and whose `code` becomes the JS
// error's `code`:
//   ERR_SPARSIFY_CUDA_OOM          cudaErrorMemoryAllocation (recoverable: free memory, retry)
//   ERR_SPARSIFY_CUDA_STICKY       errors that poison the CUDA context (illegal address, launch
//                                  failure, ...): the backend is marked dead, restart the process
//   ERR_SPARSIFY_CUDA_UNAVAILABLE  no device / driver too old
//   ERR_SPARSIFY_DEVICE            anything else
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "core/errors.h"

namespace sparsify {
namespace cuda {

struct CudaError : NativeError {
  CudaError(const std::string& c, const std::string& msg) : NativeError(ErrorKind::Device, msg, c) {}
};

// True for errors after which the context is unusable (CUDA docs: "sticky" errors).
bool is_sticky(cudaError_t e);
// Marks the backend dead after a sticky error; later calls fail fast with ERR_SPARSIFY_CUDA_STICKY.
void mark_dead(const std::string& why);
[[noreturn]] void throw_cuda(cudaError_t e, const char* expr, const char* file, int line);

}  // namespace cuda
}  // namespace sparsify

#define CUDA_CHECK(expr)                                                          \
  do {                                                                            \
    cudaError_t spx_err_ = (expr);                                                \
    if (spx_err_ != cudaSuccess) ::sparsify::cuda::throw_cuda(spx_err_, #expr, __FILE__, __LINE__); \
  } while (0)

#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
