// Row-wise building blocks of the transformer forward (norms, activations, rotary embedding,
// causal attention), all f32, parallel over rows or (batch, head) pairs.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "core/model.h"

namespace sparsify {
namespace model {

// y[r] = norm(x[r]) for rows r in [0, rows); b may be empty (RMS norms).
void norm_rows(Norm kind, const float* x, float* y, int64_t rows, int64_t width, const std::vector<float>& w,
               const std::vector<float>& b, double eps);

// y = act(x), elementwise; x == y allowed.
void activation(Act act, const float* x, float* y, int64_t n);

// y = x @ W^T (nn.Linear, W [N,K]) or x @ W (Conv1D, W [K,N]), + bias. W keeps its file dtype.
void linear(const float* x, int64_t M, int64_t K, const Tensor& W, bool conv1d, const std::vector<float>& bias, float* y,
            int64_t N);

// Rotary tables: cos/sin[t * half + j] for positions 0..T-1 (HF: angle = inv_freq * pos in f32).
struct Rope {
  int64_t half = 0;
  std::vector<float> cos, sin;
};
Rope rope_tables(const Spec& s, int64_t T);

// Applies HF's rotate_half rotary embedding in place to the first 2*rope.half features of each
// head. buf is [B*T, stride]; head h starts at offset + h * head_stride.
void apply_rope(const Rope& rope, float* buf, int64_t B, int64_t T, int64_t stride, int64_t offset, int64_t heads,
                int64_t head_stride);

// Layout of q, k, v inside their buffers: element d of head h at token row r is
// base[r * stride + offset + h * head_stride + d].
struct HeadLayout {
  const float* base;
  int64_t stride, offset, head_stride;
};

// Causal self-attention (eager semantics: scores * scale, optional tanh soft-capping, window,
// f32 softmax). out is [B*T, heads * head_dim].
void attention(const HeadLayout& q, const HeadLayout& k, const HeadLayout& v, float* out, int64_t B, int64_t T,
               int64_t heads, int64_t kv_heads, int64_t head_dim, float scale, float softcap, int64_t window);

// Plain double-accumulating loop with the same contract (native/ref/attention_reference.cpp).
void attention_reference(const HeadLayout& q, const HeadLayout& k, const HeadLayout& v, float* out, int64_t B, int64_t T,
                         int64_t heads, int64_t kv_heads, int64_t head_dim, float scale, float softcap, int64_t window);

}  // namespace model
}  // namespace sparsify
