// Global gradient-norm clipping, torch.nn.utils.clip_grad_norm_(params, max_norm) as SAELens's
// trainer calls it before each optimizer step (SAELens 6.18 training/sae_trainer.py): the total L2
// norm over every gradient of one coder, and, when it is over max_norm, every gradient scaled by
// max_norm / (norm + 1e-6). CUDA twin: native/cuda/grad_clip.cu; float64 reference:
// native/ref/grad_clip_reference.cpp.
#pragma once
#include <cstdint>
#include <vector>

namespace sparsify {

// Σ g[i]² in float64 over fixed blocks summed in order (deterministic for any thread count).
double grad_sum_squares(int64_t n, const float* g);
// torch's clip coefficient: min(1, max_norm / (norm + 1e-6)); 1 means "leave the gradients".
double grad_clip_coefficient(double norm, double max_norm);
// g *= coef in f32 (torch's grad.mul_(clip_coef_clamped)).
void grad_scale(int64_t n, float* g, float coef);

// Float64 reference: scales the buffers in place, returns the norm before clipping.
double clip_grad_norm_ref(std::vector<std::vector<double>>& grads, double max_norm);

}  // namespace sparsify
