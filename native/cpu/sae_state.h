// The resident training state of one sparse coder on the CPU (twin: native/cuda/sae_state.cu):
// its parameters (host f32 tensors, shared with JS), gradient accumulators, optimizer moments,
// the latents selected since the last dead-latent update, and sparsify's dead-latent counters.
// A training micro-step is one sae_state_step call, an optimizer step one sae_state_optimize.
#pragma once
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "core/tensor.h"
#include "cpu/optim.h"
#include "cpu/sae.h"

namespace sparsify {

// Parameter slots, in the order of coder-params.ts (CODER_PARAM_NAMES).
// kLogThreshold: the jumprelu kind's trained thresholds (its steps are the kernels of threshold_step.cpp;
// the state holds it so that the optimizer step updates it with the others).
enum SaeParam { kWEnc = 0, kBEnc = 1, kWDec = 2, kBDec = 3, kWSkip = 4, kLogThreshold = 5, kSaeParams = 6 };

struct CpuSaeState {
  int64_t M = 0, D = 0;
  bool transcode = false;
  Tensor param[kSaeParams];  // W_dec undefined for encoder-only coders, W_skip without skip_connection
  Tensor grad[kSaeParams];   // allocated (zeros) on first use
  Tensor m[kSaeParams], v[kSaeParams], z[kSaeParams];  // Adam moments (muon: m = momentum buffer) / schedule-free z
  Tensor fired;              // int32 [M]: 1 for latents selected by tracked steps since the last take / update
  // sparsify's num_tokens_since_fired (float64: exact to 2^53 tokens) and the mask derived from it.
  std::vector<double> since_fired;
  double dead_threshold = std::numeric_limits<double>::infinity();
  std::vector<uint8_t> dead;  // since_fired > dead_threshold
  int64_t num_dead = 0;
  // The last batch variance computed (one per batch, reused by its micro-batches).
  std::weak_ptr<Storage> variance_of;
  size_t variance_offset = 0;
  std::vector<int64_t> variance_shape;
  double variance = 0;

  bool has(int i) const { return param[i].defined(); }
  Tensor& grad_of(int i);  // allocates the accumulator on first use
  SaeWeights weights() const;
  SaeGrads grads();
};

// Takes the parameters (validated by the caller: f32 host tensors of matching shapes).
std::shared_ptr<CpuSaeState> make_cpu_sae_state(const Tensor (&params)[kSaeParams], bool transcode);

struct SaeStepCall {
  SaeSpec spec;
  bool backward = true;
  bool outputs = false;            // return sae_out / latent acts / indices
  bool normalize_decoder = false;  // renormalise W_dec rows first (training steps of SAEs)
  std::shared_ptr<std::vector<uint8_t>> dead_mask;  // explicit AuxK mask (nonzero = dead)
  bool dead_from_counters = false;                  // AuxK mask = the state's counters > threshold
  double auxk_alpha = 0, loss_scale = 1;
  double total_variance = -1;      // > 0: the normaliser; else batch_variance's or this batch's
  bool has_rows = false;           // train on rows [row_begin, row_end) of x (and y)
  int64_t row_begin = 0, row_end = 0;
  bool batch_variance = false;     // with rows: the whole batch's variance times the rows' share (PR #138)
  bool track_fired = false;        // record the selected latents in the state
  Tensor did_fire;                 // or: set them to 1 in this int32 [M] tensor
};

struct SaeStepOut {
  SaeLosses losses;
  Tensor sae_out, latent_acts, latent_idx;  // with call.outputs
};

// Forward, losses and (call.backward) backward ADDED into the state's gradient accumulators.
SaeStepOut sae_state_step(CpuSaeState& st, const Tensor& x, const Tensor& y, const SaeStepCall& call);

// One optimizer update of every parameter (moments created on first use), then zeroed grads.
// `project`: remove from the W_dec gradient its component along each decoder row first;
// `max_grad_norm`: then scale every gradient down to that global L2 norm (SAELens's clipping).
struct SaeOptimCall {
  OptKind kind = OptKind::Adam;
  bool project = false;
  double lr = 0, momentum = 0.95, ckp1 = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  double vector_lr = 0;  // muon: the Adam half's lr (1-D parameters)
  int64_t step = 1;
  bool nesterov = true;
  int ns_steps = 5;
  // > 0: clip_grad_norm_ over every gradient of the state first (grad_clip.h), after the projection.
  double max_grad_norm = 0;
};
// Returns the global gradient norm before clipping (after the projection), or -1 without max_grad_norm.
double sae_state_optimize(CpuSaeState& st, const SaeOptimCall& call);
// Schedule-free: p = lerp(p, z, weight) for every parameter with a z.
void sae_state_lerp_z(CpuSaeState& st, float weight);
void sae_state_zero_grads(CpuSaeState& st);

// sparsify's bookkeeping at each optimizer step: since_fired += tokens, then 0 where a latent
// fired (the tracked selections, which are cleared); returns the number of dead latents.
int64_t sae_state_update_dead(CpuSaeState& st, double tokens);
// Replaces the counters (empty: all 0) and the threshold; the dead mask follows.
void sae_state_load_dead(CpuSaeState& st, const std::vector<double>& counts, double threshold);

// Σ_{n,d} (y[n,d] − mean_n y[:,d])² in float64 (two passes per column block: stable).
double total_variance(int64_t N, int64_t D, const float* y);

}  // namespace sparsify
