// TopK / GroupMax sparse coder math on CPU (sparsify's SparseCoder, AuxK fixed as in PR #134).
//
// Layouts (row-major, f32): W_enc [M,D], b_enc [M], W_dec [M,D] (row = latent), b_dec [D],
// W_skip [D,D]; x, y [N,D]; latents acts [N,k] f32 + indices [N,k] int32.
//
// Selection rules (documented in docs/sae.md):
//   pre = relu(x' W_enc^T + b_enc), relu maps NaN to 0 (NaN in x / y is rejected up front).
//   TopK keeps the k largest pre values per row; ties go to the lower latent index. Output
//   slots are sorted by value (desc), then index (asc). GroupMax: group g = latents
//   [g*M/k, (g+1)*M/k), argmax per group (first index on ties), slots in group order.
#pragma once
#include <cstdint>
#include <vector>

namespace sparsify {

struct SaeWeights {
  int64_t D = 0, M = 0;
  const float* W_enc = nullptr;
  const float* b_enc = nullptr;
  const float* W_dec = nullptr;   // may be null (encoder-only coder)
  const float* b_dec = nullptr;
  const float* W_skip = nullptr;  // null unless skip_connection
};

struct SaeGrads {
  float* W_enc = nullptr;
  float* b_enc = nullptr;
  float* W_dec = nullptr;
  float* b_dec = nullptr;
  float* W_skip = nullptr;
};

struct SaeSpec {
  int64_t k = 0;
  bool groupmax = false;
  bool transcode = false;  // no b_dec subtraction on the encoder input
  bool multi_topk = false;
  // compute_dtype bf16: the encoder pre-activations come from the bf16-operand GEMM
  // (cpu/gemm_bf16.h); the selection, decode, losses and backward stay f32.
  bool bf16 = false;
};

// ---- fused encoder ----
struct EncodeOut {
  float* acts = nullptr;        // [N,k]
  int32_t* idx = nullptr;       // [N,k]
  float* acts4 = nullptr;       // [N,4k] when k4 > 0 (Multi-TopK selection)
  int32_t* idx4 = nullptr;
  int64_t k4 = 0;
  float* aux_acts = nullptr;    // [N,k_aux] when dead != null
  int32_t* aux_idx = nullptr;
  int64_t k_aux = 0;
  const uint8_t* dead = nullptr;  // [M], nonzero = dead
  float* pre = nullptr;         // [N,M] post-ReLU pre-activations, only when asked
};

// The encoder input [N,D]: x - b_dec for SAEs (written into buf), x itself for transcoders.
const float* sae_encoder_input(const SaeWeights& w, const SaeSpec& s, int64_t N, const float* x, std::vector<float>& buf);

// xin: the encoder input [N,D] (sae_encoder_input).
void sae_encode(const SaeWeights& w, const SaeSpec& s, int64_t N, const float* xin, const EncodeOut& out);

// The trainer's first-batch init: b_dec = mean_0(y ?? x); transcoders also
// b_enc = -(mean_0(x) W_enc^T). Means in float64. x is [Nx,D]; y [Ny,D] or null.
void sae_init_biases(const SaeWeights& w, bool transcode, int64_t Nx, const float* x, int64_t Ny, const float* y, float* b_enc,
                     float* b_dec);

// out[n] = sum_j acts[n,j] W_dec[idx[n,j]] (+ b_dec when b_dec != null). Validates indices.
void sae_decode(int64_t N, int64_t k, int64_t D, int64_t M, const float* acts, const int32_t* idx, const float* W_dec,
                const float* b_dec, float* out);

// ---- training step ----
struct SaeStepArgs {
  int64_t N = 0;
  const float* x = nullptr;
  const float* y = nullptr;           // null: y = x
  const uint8_t* dead = nullptr;      // AuxK when non-null and any latent is dead
  double auxk_alpha = 0;              // weight of AuxK in the loss
  double loss_scale = 1;              // gradients are loss_scale * d(loss)
  double total_variance = -1;         // <= 0: computed from this batch
  int32_t* did_fire = nullptr;        // [M], set to 1 for the returned latents
  bool force_sparse_aux = false;      // tests: never take the dense-GEMM AuxK route
  // Optional outputs of the forward (may be null):
  float* sae_out = nullptr;           // [N,D] (the 4k reconstruction with multi_topk)
  float* latent_acts = nullptr;       // [N,k] or [N,4k] with multi_topk
  int32_t* latent_idx = nullptr;
};

struct SaeLosses {
  double fvu = 0, auxk = 0, multi_topk_fvu = 0, loss = 0, total_variance = 0;
  int64_t num_dead = 0;
};

// Forward + losses; when g != null also the backward, ADDED into g (never dense in M).
SaeLosses sae_forward_backward(const SaeWeights& w, const SaeSpec& s, const SaeStepArgs& a, const SaeGrads* g);

// W_dec[m] /= (||W_dec[m]|| + eps_f32)
void sae_normalize_decoder(int64_t M, int64_t D, float* W_dec);
// g[m] -= <g[m], W_dec[m]> W_dec[m]
void sae_project_decoder_grad(int64_t M, int64_t D, const float* W_dec, float* g);

// Rejects NaN/Inf with a ValueError naming `what`.
void check_finite(const float* p, int64_t n, const char* what);

// ---- float64 reference (native/ref/sae_reference.cpp) ----
// Dense, naive, double precision. `frozen` (or null = same as w) supplies the parameters the
// detached paths use: the AuxK residual e, and the encoder for the AuxK / Multi-TopK latents, so
// that the gradient of the returned loss w.r.t. w equals sparsify's gradient.
struct SaeRefResult {
  SaeLosses losses;
  std::vector<double> sae_out;                       // [N,D]
  std::vector<double> pre;                           // [N,M]
  std::vector<int32_t> idx;                          // [N,k] main selection
  std::vector<double> acts;
  std::vector<double> g_W_enc, g_b_enc, g_W_dec, g_b_dec, g_W_skip;
};
SaeRefResult sae_reference(const SaeWeights& w, const SaeWeights* frozen, const SaeSpec& s, int64_t N, const float* x,
                           const float* y, const uint8_t* dead, double auxk_alpha, double total_variance,
                           bool want_grads);

}  // namespace sparsify
