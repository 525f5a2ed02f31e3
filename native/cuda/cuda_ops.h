// Host entry points of the CUDA backend. Each takes host tensors, runs on the GPU (upload,
// kernels, download inside one cuda::Session) and returns host tensors: the tensors of this
// codebase live in host memory, so these are coarse, one-call-per-step operations. Shapes and
// dtypes are validated by the caller (bindings/cuda/*.cpp) before a Session is opened.
// Every function documents the CPU reference it must match (tests: test/cuda/*.test.ts).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/tensor.h"

namespace sparsify {
namespace cuda {

// C[M,N] = A[M,K] · op(B) (+ bias[N]); A, B any float dtype, rounded to `compute` (BF16 or
// F16) on the device, f32 accumulation, f32 output. b_trans: B stored [N,K] (nn.Linear).
Tensor matmul(const Tensor& a, const Tensor& b, bool b_trans, const Tensor& bias, DType compute);

struct EncodeOptions {
  int64_t k = 0;
  bool groupmax = false;
  Tensor b_dec;      // optional: x_in = x - b_dec (SAE); undefined for transcoders
  Tensor dead_mask;  // optional int32 [M] (nonzero = dead): AuxK in the same pass
  int64_t k_aux = 0;
  DType compute = DType::BF16;
  bool force_unfused = false;  // tests: exercise the chunked fallback path
  bool pre_acts = false;       // also return the dense [N, M] relu pre-activations
};
struct EncodeResult {
  Tensor acts, indices;          // [N,k] f32, int32
  Tensor aux_acts, aux_indices;  // [N,k_aux] when dead_mask given and k_aux > 0
  Tensor pre_acts;               // [N,M] f32 when EncodeOptions::pre_acts
  bool fused = true;
};
EncodeResult topk_encode(const Tensor& x, const Tensor& w_enc, const Tensor& b_enc, const EncodeOptions& o);

// Encoder weights converted once and kept on the device (inference: activations stream through,
// the [M, D] weights are not re-uploaded per call). Freed when the last reference goes.
struct ResidentEncoder {
  void* w = nullptr;      // [M, pad32(D)] of `compute` (bf16/f16), zero-padded
  void* b_enc = nullptr;  // [M] f32
  void* b_dec = nullptr;  // [D] f32 or null (transcoder)
  int64_t M = 0, D = 0;
  DType compute = DType::BF16;
  ResidentEncoder() = default;
  ResidentEncoder(const ResidentEncoder&) = delete;
  ResidentEncoder& operator=(const ResidentEncoder&) = delete;
  ~ResidentEncoder();
};
std::shared_ptr<ResidentEncoder> make_resident_encoder(const Tensor& w_enc, const Tensor& b_enc, const Tensor& b_dec,
                                                       DType compute);
// Same as topk_encode with the resident weights (o.b_dec and o.compute are taken from `enc`).
EncodeResult resident_encode(const ResidentEncoder& enc, const Tensor& x, const EncodeOptions& o);

// out[n] = Σ_j acts[n,j] · W[idx[n,j]] (+ b_dec); W [M,D] any float dtype; f32 out.
Tensor decode(const Tensor& acts, const Tensor& indices, const Tensor& w_dec, const Tensor& b_dec);

// Decoder weights kept on the device (W_dec in its own dtype, b_dec as f32).
struct ResidentDecoder {
  void* w = nullptr;  // [M, D] of w_dtype
  void* b = nullptr;  // [D] f32 or null
  DType w_dtype = DType::F32;
  int64_t M = 0, D = 0;
  ResidentDecoder() = default;
  ResidentDecoder(const ResidentDecoder&) = delete;
  ResidentDecoder& operator=(const ResidentDecoder&) = delete;
  ~ResidentDecoder();
};
std::shared_ptr<ResidentDecoder> make_resident_decoder(const Tensor& w_dec, const Tensor& b_dec);
Tensor resident_decode(const ResidentDecoder& dec, const Tensor& acts, const Tensor& indices);

struct DecodeGrads {
  Tensor grad_w_dec;  // [M,D] f32, deterministic (entries summed in (n,j) order per latent)
  Tensor grad_acts;   // [N,k] f32: <grad_out[n], W[idx[n,j]]>
  Tensor grad_b_dec;  // [D] f32: Σ_n grad_out[n]
};
DecodeGrads decode_backward(const Tensor& grad_out, const Tensor& acts, const Tensor& indices, const Tensor& w_dec);

struct EncoderGrads {
  Tensor grad_x;      // [N,D]: Σ_j g[n,j] · W_enc[idx[n,j]]
  Tensor grad_w_enc;  // [M,D]: Σ_{(n,j): idx=m} g[n,j] · x_in[n]
  Tensor grad_b_enc;  // [M]:   Σ_{(n,j): idx=m} g[n,j]
};
EncoderGrads encoder_backward(const Tensor& grad_acts, const Tensor& indices, const Tensor& x_in, const Tensor& w_enc);

Tensor normalize_rows(const Tensor& w, float eps);     // W[m] / (‖W[m]‖ + eps)
Tensor project_grad(const Tensor& grad, const Tensor& w);  // g[m] − <g[m], w[m]> w[m]

struct AdamState {
  Tensor param, m, v;
};
AdamState adam_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, double lr,
                    double beta1, double beta2, double eps, int64_t step);
struct SignumState {
  Tensor y, z;
};
// One schedule-free signum step on (y, z) with averaging weight c (host bookkeeping of k,
// lr_max, weight_sum is the caller's, see sparsify/sign_sgd.py and schedulefree).
SignumState signum_step(const Tensor& y, const Tensor& z, const Tensor& grad, double lr, double c, double beta);

// A sparse coder's training state kept on the device (sae_state.cu): f32 parameters, gradient
// accumulators, optimizer state. One forward_backward per batch (gradients accumulate, scaled by
// loss_scale = 1/grad_acc_steps), one apply per optimizer step (projection, update, zero grads).
struct SaeConfig {
  int64_t k = 0;
  bool groupmax = false;
  bool transcode = false;
  bool normalize_decoder = true;  // ignored for transcoders
  DType compute = DType::BF16;
  bool skip = false;  // skip_connection: a fifth parameter W_skip [D, D] (set by make_resident_sae)
  bool log_threshold = false;  // jumprelu: a parameter log_threshold [M] in slot 5 (set by make_resident_sae)
};
struct ResidentSae;
// w_skip: optional [D, D] (skip_connection, sae_out += x·W_skipᵀ); undefined for none.
// log_threshold: optional [M] (jumprelu): trained by the optimizer step like the others; the
// forward of the kinds runs in the kind kernels (threshold_step.cu) over sae_views.
std::shared_ptr<ResidentSae> make_resident_sae(const Tensor& w_enc, const Tensor& b_enc, const Tensor& w_dec,
                                               const Tensor& b_dec, const Tensor& w_skip, const SaeConfig& cfg,
                                               const Tensor& log_threshold = Tensor());
// Per-call settings of one forward(/backward): the trainer changes k (k decay), and a coder's cfg
// (activation, normalize_decoder) may be replaced after loading; transcode and compute are fixed.
struct SaeCall {
  int64_t k = 0;
  bool groupmax = false;
  bool normalize_decoder = true;  // renormalise W_dec rows first (SAE only; backward calls only)
  double auxk_alpha = 0, loss_scale = 1;
  bool auxk_includes_b_dec = false;
  double total_variance = -1;  // > 0: normaliser of FVU / AuxK instead of this batch's (PR #138)
  bool backward = true;        // false: forward only (sparsify's SparseCoder.forward, no gradients)
  bool outputs = false;        // also return sae_out [N,D] and the latent acts [N,k]
  bool multi_topk = false;     // Multi-TopK: also the 4k selection, its FVU and (loss/8) its W_dec/b_dec gradient
  bool track_fired = false;    // record the selected latents in the state (sae_take_fired)
  bool dead_from_counters = false;  // AuxK's dead mask: the state's dead-latent counters (not dead_mask)
  // Micro-batches: when defined (and total_variance <= 0), the normaliser is this whole batch's
  // variance times variance_fraction (rows / batch rows), computed on the device.
  Tensor variance_of;
  double variance_fraction = 1;
};
struct SaeStepResult {
  double fvu = 0, auxk_loss = 0, total_variance = 0, multi_topk_fvu = 0;
  int64_t num_dead = 0;
  // With multi_topk these are the 4k selection's (as the CPU saeStep returns and marks): [N, 4k].
  Tensor indices;  // [N, k] int32, only with outputs or did_fire (otherwise they stay on the device)
  Tensor acts, sae_out;  // with outputs: [N, k] f32, [N, D] f32
  int64_t k_aux = 0;
};
// dead_mask: host int32 [M] (nonzero = dead): AuxK whenever some latent is dead (as the CPU
// saeStep; callers pass it only when auxk_alpha > 0 for training). did_fire: optional host int32
// [M]; entries of the selected latents are set to 1.
SaeStepResult sae_forward_backward(ResidentSae& sae, const Tensor& x, const Tensor& y, const Tensor& dead_mask,
                                   const SaeCall& call, const Tensor& did_fire);
// The latents selected by track_fired steps since the last call (host int32 [M], 0/1); clears them.
Tensor sae_take_fired(ResidentSae& sae);
// sparsify's dead-latent counters (num_tokens_since_fired, float64 on the device; CPU twin:
// native/cpu/sae_state.cpp): at an optimizer step counters += tokens, 0 where a tracked step
// selected the latent (cleared); the dead mask (counter > threshold) comes back once per update
// for the next steps' AuxK. Returns the number of dead latents.
int64_t sae_update_dead(ResidentSae& sae, double tokens);
std::vector<double> sae_read_dead(ResidentSae& sae);
// counts empty: all 0.
void sae_load_dead(ResidentSae& sae, const std::vector<double>& counts, double threshold);
int64_t sae_num_dead(const ResidentSae& sae);
// Inference with the resident parameters: TopK/GroupMax codes of x (host outputs), decode of codes.
struct SaeCodes {
  Tensor acts, indices;  // [N, k] f32, int32
  Tensor pre_acts;       // [N, M] f32 relu pre-activations when asked for
};
SaeCodes sae_encode(ResidentSae& sae, const Tensor& x, int64_t k, bool groupmax, bool pre_acts);
Tensor sae_decode(ResidentSae& sae, const Tensor& acts, const Tensor& indices);
struct SaeOptim {
  bool signum = false;
  double lr = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // Adam
  int64_t step = 1;
  double c = 1, beta = 0.95;  // signum (schedule-free)
  int project = -1;           // W_dec gradient projection: -1 = the state's normalize_decoder && !transcode
  // muon: Muon (lr) on the 2-D parameters, Adam (lr_vector, beta1/beta2/eps/step) on the 1-D ones.
  bool muon = false;
  double lr_vector = 0, momentum = 0.95, weight_decay = 0.1;
  bool nesterov = true;
  int ns_steps = 5;
  // > 0: clip_grad_norm_ over every gradient first (after the projection; grad_clip.cu).
  double max_grad_norm = 0;
};
// Returns the global gradient norm before clipping, or -1 without max_grad_norm.
double sae_apply(ResidentSae& sae, const SaeOptim& o);
struct SaeParams {
  Tensor w_enc, b_enc, w_dec, b_dec, w_skip, log_threshold;          // w_skip / log_threshold: when the state has them
  Tensor g_w_enc, g_b_enc, g_w_dec, g_b_dec, g_w_skip, g_log_threshold;  // with_grads: the gradient accumulators
};
// Parameter slots: w_enc, b_enc, w_dec, b_dec, w_skip (skip_connection), log_threshold (jumprelu).
constexpr int kSaeMaxParams = 6;
// Whether the state has parameter slot i.
bool sae_has_param(const ResidentSae& sae, int i);
// Device tensors that view (and keep alive) the state's parameters, gradient accumulators (slot
// order, undefined where absent) and fired marks (int32 [M]): the kind kernels read and write
// them in place (SparseCoder kinds on cuda, packages/core/src/backend/kind-step.ts).
struct SaeViews {
  Tensor params[kSaeMaxParams], grads[kSaeMaxParams], fired;
};
SaeViews sae_views(const std::shared_ptr<ResidentSae>& sae);
int sae_num_params(const ResidentSae& sae);
// eval_beta > 0 with signum state: returns the schedule-free average x = lerp(y, z, 1 - 1/β).
SaeParams sae_read(ResidentSae& sae, double eval_beta, bool with_grads);
// Optimizer state in parameter order (w_enc, b_enc, w_dec, b_dec, w_skip?); undefined where not allocated.
struct SaeOptState {
  Tensor m[kSaeMaxParams], v[kSaeMaxParams], z[kSaeMaxParams];
};
SaeOptState sae_read_state(ResidentSae& sae);
// Writes what is defined: parameters (any float dtype, converted to f32) and optimizer slots (f32).
// reset_optimizer frees m, v and z first (a loaded state without slots starts fresh);
// zero_grads clears the gradient accumulators (SparseCoder.zeroGrad).
void sae_load_state(ResidentSae& sae, const Tensor (&params)[kSaeMaxParams], const SaeOptState& st, bool reset_optimizer,
                    bool zero_grads);
// Schedule-free eval()/train(): p = lerp(p, z, weight) for every parameter that has a z (torch's lerp).
void sae_lerp_z(ResidentSae& sae, double weight);
const SaeConfig& sae_config(const ResidentSae& sae);
int64_t sae_num_latents(const ResidentSae& sae);
int64_t sae_d_in(const ResidentSae& sae);
int64_t sae_k(const ResidentSae& sae);

// Transformer building blocks (f32 out; inputs any float dtype).
Tensor layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps);
Tensor rms_norm(const Tensor& x, const Tensor& w, float eps, bool add_one);
Tensor rope(const Tensor& x, const Tensor& positions, double theta, int64_t rotary_dim, bool neox);
enum class Act { GeluErf = 0, GeluTanh = 1, Silu = 2, Relu = 3, QuickGelu = 4 };
Tensor activation(const Tensor& x, Act a);
struct AttentionOptions {
  float scale = 0.f;  // 0: 1/sqrt(head_dim)
  bool causal = true;
  int64_t window = 0;    // > 0: key j visible from query i iff i - window < j <= i
  float softcap = 0.f;   // > 0: s = softcap * tanh(s / softcap)
};
// q [T,Hq,hd], k/v [T,Hkv,hd] (Hq % Hkv == 0, GQA) -> [T,Hq,hd] f32.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& o);

// Device-resident micro-benchmarks for bench/cuda.ts (no host transfers in the timed region);
// median milliseconds over `iters` runs after a warm-up.
double bench_gemm_ms(int64_t M, int64_t N, int64_t K, int iters);
double bench_copy_ms(int64_t bytes, int iters);
double bench_encode_ms(int64_t N, int64_t D, int64_t M, int64_t k, int iters);

// Sizes of the fused encoder on this device: the largest k whose candidate lists fit in shared
// memory (0 when no device). Exposed for tests and docs.
int64_t fused_topk_max_k();

// out[r] = x[idx[r]] on the device (row_gather.cu); x host or device f32 [N,D], idx host int32 [n]
// already checked against N. Returns a device tensor.
Tensor gather_rows(const Tensor& x, const Tensor& idx);
// Σ (y − mean_n y)² of y [N, D] f32, host or device (sae_state.cu; f32 reduction on the device).
double total_variance(const Tensor& y);

}  // namespace cuda
}  // namespace sparsify
