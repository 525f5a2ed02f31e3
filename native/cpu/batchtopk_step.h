// Training step of BatchTopK coders (SAELens batchtopk / matryoshka_batchtopk) on CPU.
//   x' = x - b_dec, h = x' W_enc^T + b_enc, n_m = ||W_dec[m]||, a = ReLU(h * n)
//   keep the top floor(k * N) values of a over the whole batch (ties: lower flat index first),
//   or with per_row the top k of each row,
//   u = a / n on the kept set (= h there), out = u W_dec + b_dec, mse = mean_n sum_d (out - x)^2
//   matryoshka: + sum over widths w < M of mean_n sum_d (u[:, :w] W_dec[:w] + b_dec - x)^2
// AuxK (SAELens topk_sae.py calculate_topk_aux_loss), when aux_coefficient > 0 and w.dead marks
// some latent: r = x - out (no gradient), k_aux = D / 2, scale = min(num_dead / k_aux, 1),
// k_aux = min(k_aux, num_dead); per row the top k_aux of h * n over the dead latents (raw values,
// no ReLU; ties: lower latent), recon = (a / n) W_dec + b_dec,
// aux = aux_coefficient * scale * mean_n sum_d (recon - r)^2, added to the loss.
// The threshold update needs min(a) over the kept positive values, which is returned.
// Float64 reference: packages/core/src/kinds/reference.ts. Gradients are ADDED (times loss_scale).
#pragma once
#include <cstdint>
#include <vector>

#include "cpu/threshold_step.h"

namespace sparsify {

struct BatchTopKSpec {
  double k = 0;                  // average latents per row (a float, as SAELens's)
  std::vector<int64_t> widths;   // matryoshka prefix widths (< M); empty for plain BatchTopK
  double loss_scale = 1.0;
  // TopK instead: the top k (an integer) of each row (Matryoshka over TopK, SAELens's TopK with
  // rescale_acts_by_decoder_norm); ties keep the lower latent index.
  bool per_row = false;
  bool apply_b_dec = true;  // as ThresholdStepSpec::apply_b_dec
  double aux_coefficient = 0;  // AuxK weight (SAELens aux_loss_coefficient); needs w.dead
};

struct BatchTopKLosses {
  double mse = 0, inner = 0, loss = 0;
  double aux = 0;        // AuxK loss (in loss)
  double min_kept = 0;   // smallest kept positive activation (0 when none is positive)
  int64_t kept = 0;      // kept positive activations
};

BatchTopKLosses batchtopk_step(const ThresholdStepWeights& w, const BatchTopKSpec& s, int64_t N, const float* x,
                               const ThresholdStepGrads& g);

}  // namespace sparsify
