// Training step (loss + gradients) of the threshold coders on CPU: ReLU + L1 (SAELens
// "standard") and JumpReLU with the straight-through threshold gradient and a step or tanh L0
// penalty. Formulas in docs/saelens.md; float64 reference: packages/core/src/kinds/reference.ts.
//
//   x' = x - b_dec, h = x' W_enc^T + b_enc, n_m = ||W_dec[m]||, out = f W_dec + b_dec
//   mse = mean_n sum_d (out - x)^2
//   relu:     f = ReLU(h),               loss = mse + l1 mean_n ||f ⊙ n||_p  (p = lp_norm; p = 1: sum_m f n_m)
//   jumprelu: f = h 1[h > exp(log_t)],    loss = mse + l0 mean_n sum_m (H(h - t) | tanh(s f n_m))
//             + pre_act mean_n sum_m ReLU(t_m - h) dead_m n_m   (SAELens pre_act_loss, with w.dead)
// Gradients are ADDED, times loss_scale, into the grad buffers (same layouts as the weights).
#pragma once
#include <cstdint>

namespace sparsify {

struct ThresholdStepWeights {
  int64_t D = 0, M = 0;
  const float* W_enc = nullptr;  // [M,D]
  const float* b_enc = nullptr;  // [M]
  const float* log_threshold = nullptr;  // [M], jumprelu only
  const float* W_dec = nullptr;  // [M,D]
  const float* b_dec = nullptr;  // [D]
  // Optional int32 [M], nonzero = dead latent: the mask of BatchTopK's AuxK and JumpReLU's
  // pre-activation loss (absent or all zero: those terms are 0).
  const int32_t* dead = nullptr;
};

struct ThresholdStepGrads {
  float* W_enc = nullptr;
  float* b_enc = nullptr;
  float* log_threshold = nullptr;
  float* W_dec = nullptr;
  float* b_dec = nullptr;
  // Optional int32 [M]: set to 1 for every latent with a positive activation in this batch.
  int32_t* did_fire = nullptr;
};

struct ThresholdStepSpec {
  bool jumprelu = false;
  double l1_coefficient = 0;  // relu
  double lp_norm = 1.0;       // relu: p of the penalty's p-norm (SAELens lp_norm), finite and >= 1
  double l0_coefficient = 0;  // jumprelu
  double pre_act_coefficient = 0;  // jumprelu: SAELens pre_act_loss_coefficient (0 = off)
  double bandwidth = 0.05;    // jumprelu: width of the rectangle kernel
  bool tanh_l0 = false;       // jumprelu: tanh instead of step
  double tanh_scale = 4.0;
  double loss_scale = 1.0;
  // SAELens apply_b_dec_to_input: x' = x - b_dec (true) or x (false, and b_dec then gets no
  // gradient through the encoder input).
  bool apply_b_dec = true;
};

struct ThresholdStepLosses {
  double mse = 0, sparsity = 0, loss = 0;
  double pre_act = 0;  // jumprelu's pre-activation loss (in loss)
};

ThresholdStepLosses threshold_step(const ThresholdStepWeights& w, const ThresholdStepSpec& s, int64_t N, const float* x,
                                   const ThresholdStepGrads& g);

}  // namespace sparsify
