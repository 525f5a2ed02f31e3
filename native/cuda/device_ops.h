// Device-pointer building blocks shared between the kernel files (used by the host entry points
// of cuda_ops.h and by the resident SAE training state in sae_state.cu). All launch on the given
// stream; nothing here synchronises or copies to the host.
#pragma once
#include <cstdint>
#include <vector>

#include "cuda/cuda_context.h"
#include "cuda/cuda_ops.h"

namespace sparsify {
namespace cuda {

// sae_encode.cu: TopK/GroupMax (+AuxK) selection for X [N, pad32(D)] and W [M, pad32(D)] of
// `compute` (bf16/f16), b_enc f32 [M]. vals/idx are [N, k]; aux_v/aux_i [N, k_aux].
struct DeviceEncodeOut {
  DeviceBuffer vals, idx, aux_v, aux_i;
  DeviceBuffer pre;  // [N, M] f32 relu pre-activations when EncodeOptions::pre_acts
  int k_aux = 0;
  bool fused = true;
  // Host sources of the AuxK maps' async copies: alive until the caller syncs (locals would die
  // on return, before the stream is synchronised).
  std::vector<int> host_dead_list, host_col_map;
};
DeviceEncodeOut encode_on_device(Session& ses, DType compute, const void* X, const void* W, const float* b_enc,
                                 int64_t N, int64_t D, int64_t M, const EncodeOptions& o);

// sae_decode.cu
// out[n] = Σ_j acts[n,j] · W[idx[n,j]] (+ bias[d]); W and bias of any float dtype.
void embedding_bag(const float* acts, const int* idx, int64_t N, int k, const void* W, DType wdt, int64_t D,
                   const void* bias, DType bdt, float* out, cudaStream_t s);
// out[slot] = <G[slot / k], W[idx[slot]]>
void slot_dot(const float* G, const int* idx, int64_t NK, int k, const void* W, DType wdt, int64_t D, float* out,
              cudaStream_t s);
// Latent-sorted CSR of the N·k slots (stable: slot order within a latent).
struct Csr {
  DeviceBuffer start, slots;
};
Csr build_csr(const int* idx, int64_t NK, int64_t M, cudaStream_t s);
// out[m] (=|+=) Σ_{slots of m} w[slot] · R[slot / k];  out_sum[m] (=|+=) Σ w[slot]  (accumulate: +=)
void csr_rows(const Csr& c, const float* w, int k, const float* R, int64_t M, int64_t D, float* out, float* out_sum,
              bool accumulate, cudaStream_t s);
// out[d] (=|+=) scale · Σ_n G[n,d]
void column_sum(const float* G, int64_t N, int64_t D, float scale, float* out, bool accumulate, cudaStream_t s);

// optim.cu (f32, in place)
void normalize_rows_dev(float* W, int64_t M, int64_t D, float eps, cudaStream_t s);
void project_grad_dev(float* G, const float* W, int64_t M, int64_t D, cudaStream_t s);
void adam_dev(float* p, const float* g, float* m, float* v, int64_t n, double lr, double beta1, double beta2, double eps,
              int64_t step, cudaStream_t s);
void signum_dev(float* y, float* z, const float* g, int64_t n, double lr, double c, double beta, cudaStream_t s);
// grad_clip.cu: torch's clip_grad_norm_ in two launches without a host round trip.
struct GradBuffer {
  float* g;
  int64_t n;
};
// *out (device double) = Σ over the buffers of Σ g² (double accumulation, fixed grid).
void grad_sum_squares(const std::vector<GradBuffer>& grads, double* out, cudaStream_t s);
// g *= min(1, max_norm / (sqrt(*sumsq) + 1e-6)) (f32; nothing when the coefficient is 1).
void grad_scale(float* g, int64_t n, const double* sumsq, double max_norm, cudaStream_t s);
// muon.cu: Muon on a 2-D parameter p [rows, cols] with momentum buffer `buf`: weight decay,
// momentum (+Nesterov), Newton–Schulz (bf16 GEMM operands, f32 accumulation) and the update with
// lr·0.2·sqrt(max(rows, cols)). g is overwritten (the caller zeroes it after).
void muon_dev(float* p, float* g, float* buf, int64_t rows, int64_t cols, double lr, double momentum, bool nesterov,
              double weight_decay, int ns_steps, cudaStream_t s);

// ---- transformer forward building blocks (model_forward.cu); f32 device buffers unless noted.
// gemm.cu: C[M,N] = A[M,Kp] · B[N,Kp]ᵀ (+ bias[N]); A, B bf16 (K zero-padded to Kp, a multiple
// of 32), f32 accumulation and output, C row stride N.
void gemm_bf16_dev(const void* A, const void* B, const float* bias, float* C, int64_t M, int64_t N, int64_t Kp,
                   cudaStream_t s);
// gemm.cu: gemm_bf16_dev on the main loop named (the self-test's check of both paths; wgmma
// needs an sm_90 device).
void gemm_bf16_dev_on_path(bool wgmma, const void* A, const void* B, const float* bias, float* C, int64_t M, int64_t N,
                           int64_t Kp, cudaStream_t s);
// layers.cu: one row of D per CTA; w/b may be null (no affine / no bias).
void layer_norm_dev(const float* x, const float* w, const float* b, int64_t rows, int64_t D, float eps, float* out,
                    cudaStream_t s);
void rms_norm_dev(const float* x, const float* w, int64_t rows, int64_t D, float eps, bool add_one, float* out,
                  cudaStream_t s);
void activation_dev(const float* x, int64_t n, Act a, float* out, cudaStream_t s);  // x == out allowed
// attention.cu: causal attention over B sequences of T tokens. Element d of head h of token row r
// (r = b·T + t) of q is q.base[r·q.row + h·q.head + d] (likewise k, v with kv heads); out is
// [B·T, Hq·hd]. q is multiplied by `scale` before q·k; softcap > 0: s = cap·tanh(s / cap);
// window > 0: key j visible from query i iff i - window < j <= i. hd <= attention_max_head_dim().
struct HeadsView {
  const float* base;
  int64_t row, head;
};
void attention_dev(const HeadsView& q, const HeadsView& k, const HeadsView& v, float* out, int64_t B, int64_t T,
                   int64_t Hq, int64_t Hkv, int64_t hd, float scale, float softcap, int64_t window, cudaStream_t s);
int64_t attention_max_head_dim();

}  // namespace cuda
}  // namespace sparsify
