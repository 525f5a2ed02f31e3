// Host entry points of the threshold-coder training steps on the device (threshold_step.cu,
// batchtopk_step.cu) and the pieces they share. Same arguments and results as the CPU steps
// (native/cpu/threshold_step.h, batchtopk_step.h); tensors f32, on the host or the device,
// checked by the binding (native/bindings/cuda/threshold_step.cpp).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "cuda/cuda_context.h"

namespace sparsify {
namespace cuda {

struct ThresholdStepArgs {
  Tensor w_enc, b_enc, log_threshold, w_dec, b_dec;          // weights (log_threshold: jumprelu)
  Tensor g_w_enc, g_b_enc, g_log_threshold, g_w_dec, g_b_dec;  // gradients, added into
  Tensor x;
  Tensor did_fire;  // int32 [M] or undefined: set to 1 for each latent with a positive activation
  bool apply_b_dec = true;  // encode x - b_dec (SAELens apply_b_dec_to_input), else x
  bool jumprelu = false;
  double l1_coefficient = 0, l0_coefficient = 0, bandwidth = 0.05;
  double lp_norm = 1.0;  // relu: p of the penalty's p-norm
  bool tanh_l0 = false;
  double tanh_scale = 4.0, loss_scale = 1.0;
  Tensor dead;  // int32 [M] (any device) or undefined: JumpReLU's pre-act loss mask
  double pre_act_coefficient = 0;
};
struct ThresholdStepLossesDev {
  double mse = 0, sparsity = 0, loss = 0, pre_act = 0;
};
ThresholdStepLossesDev threshold_step(const ThresholdStepArgs& a);

struct BatchTopKStepArgs {
  Tensor w_enc, b_enc, w_dec, b_dec;
  Tensor g_w_enc, g_b_enc, g_w_dec, g_b_dec;
  Tensor x;
  Tensor did_fire;  // int32 [M] or undefined: set to 1 for each latent with a positive kept activation
  bool apply_b_dec = true;
  bool per_row = false;  // TopK instead: the top k (an integer) of each row
  double k = 0;
  std::vector<int64_t> widths;  // matryoshka prefix widths (< M), strictly increasing
  double loss_scale = 1.0;
  Tensor dead;  // int32 [M] (any device) or undefined: AuxK's mask
  double aux_coefficient = 0;
};
struct BatchTopKLossesDev {
  double mse = 0, inner = 0, loss = 0, min_kept = 0, aux = 0;
  int64_t kept = 0;
};
BatchTopKLossesDev batchtopk_step(const BatchTopKStepArgs& a);

// Scalars of the sparsity terms, passed by value to the kernels. c = coefficient / N.
struct StepMath {
  bool jumprelu = false, tanh_l0 = false;
  double tanh_scale = 4.0, eps = 0.05, c = 0;
  double p = 1.0;  // relu: lp_norm
};

// norm[m] = ||W_dec[m]|| (double sum, as the CPU); theta[m] = exp(log_t[m]) when log_t is given.
void latent_prep_dev(const float* W_dec, const float* log_t, int64_t M, int64_t D, float* norm, float* theta, cudaStream_t s);
// did_fire[idx[j]] = 1 for each entry j < nnz with vals[j] > 0.
void mark_fired_dev(const float* vals, const int* idx, int64_t nnz, int* did_fire, cudaStream_t s);
// The dead latents of an int32 [M] mask on either device, in latent order (host list).
std::vector<int> dead_list(const Tensor& dead, cudaStream_t s);
// row_of[j] = the row of CSR entry j.
void row_of_dev(const int64_t* row_ptr, int64_t N, int* row_of, cudaStream_t s);

// A gradient buffer the kernels add into: a device tensor in place, or a device copy of a host
// tensor that write_back() copies back (the caller syncs the stream after).
class GradTarget {
 public:
  GradTarget() = default;
  GradTarget(const Tensor& t, cudaStream_t s);
  float* ptr() const { return ptr_; }
  int* int_ptr() const { return reinterpret_cast<int*>(ptr_); }  // an int32 target (fired marks)
  void write_back();

 private:
  Tensor t_;
  cudaStream_t s_ = nullptr;
  DeviceTensor copy_;
  float* ptr_ = nullptr;
};

}  // namespace cuda
}  // namespace sparsify
