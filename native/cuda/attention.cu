// Fused attention forward, flash-style: keys/values stream through shared memory in tiles of
// 32 and each query keeps a running max / sum / output (online softmax), so the [T, T] score
// matrix is never stored. Causal mask, sliding window (key j visible from query i iff
// i - window < j <= i), logit soft-capping (s = cap · tanh(s / cap), after the scale, as
// Gemma 2) and grouped-query attention (query head h reads kv head h / (Hq / Hkv), as HF
// repeat_kv). f32 SIMT arithmetic (one warp per query, lanes over keys then over head dims);
// not a tensor-core kernel. CPU reference: softmax(mask(scale · q·kᵀ)) · v in float64.
#include <algorithm>
#include <cfloat>

#include "cuda/common.cuh"
#include "cuda/cuda_context.h"
#include "cuda/device_ops.h"
#include "cuda/cuda_ops.h"

namespace sparsify {
namespace cuda {

namespace {
constexpr int ATT_WARPS = 8;   // queries per CTA
constexpr int ATT_KT = 32;     // keys per tile
constexpr int ATT_MAXC = 8;    // head_dim <= 256 (8 values per lane)

// Element d of head h of token i of batch element b is at  x[(b·T + i)·row + h·head + d]
// (q/k/v rows may be wider than the heads: fused qkv buffers); out is [B·T, Hq·hd].
struct AttParams {
  const void* q; const void* k; const void* v;
  DType qdt, kdt, vdt;
  int64_t T, Hq, Hkv, hd;
  float scale, softcap;
  bool causal;
  int64_t window;
  float* out;
  int64_t q_row, q_head, k_row, k_head, v_row, v_head;
};

__global__ void __launch_bounds__(ATT_WARPS * 32) attention_kernel(AttParams p) {
  SPX_DYNAMIC_SHARED(float, sm, 16);
  const int64_t hd = p.hd;
  float* qs = sm;                          // [ATT_WARPS][hd]
  float* ks = qs + ATT_WARPS * hd;         // [ATT_KT][hd + 1]  (padded: lane t reads row t)
  float* vs = ks + ATT_KT * (hd + 1);      // [ATT_KT][hd]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t h = blockIdx.y, hk = h / (p.Hq / p.Hkv), bT = int64_t(blockIdx.z) * p.T;
  const int64_t q0 = int64_t(blockIdx.x) * ATT_WARPS, i = q0 + warp;
  const bool active = i < p.T;
  for (int64_t d = lane; d < hd; d += 32)
    qs[warp * hd + d] = active ? load_f32(p.q, p.qdt, (bT + i) * p.q_row + h * p.q_head + d) * p.scale : 0.f;
  // Key range needed by any query of this CTA.
  const int64_t q_last = min(q0 + ATT_WARPS, p.T) - 1;
  const int64_t j_end = p.causal ? q_last + 1 : p.T;
  const int64_t j_begin = (p.window > 0 && q0 - p.window + 1 > 0) ? q0 - p.window + 1 : 0;
  float m = -FLT_MAX, l = 0.f, acc[ATT_MAXC];
#pragma unroll
  for (int c = 0; c < ATT_MAXC; ++c) acc[c] = 0.f;
  for (int64_t j0 = j_begin - (j_begin % ATT_KT); j0 < j_end; j0 += ATT_KT) {
    __syncthreads();  // previous tile fully consumed (and qs written, first time)
    for (int64_t e = threadIdx.x; e < ATT_KT * hd; e += blockDim.x) {
      int64_t t = e / hd, d = e % hd, j = j0 + t;
      bool ok = j < p.T;
      ks[t * (hd + 1) + d] = ok ? load_f32(p.k, p.kdt, (bT + j) * p.k_row + hk * p.k_head + d) : 0.f;
      vs[t * hd + d] = ok ? load_f32(p.v, p.vdt, (bT + j) * p.v_row + hk * p.v_head + d) : 0.f;
    }
    __syncthreads();
    if (!active) continue;  // warp-uniform; no barrier below within the tile
    const int64_t j = j0 + lane;
    bool valid = j < p.T && (!p.causal || j <= i) && (p.window <= 0 || j > i - p.window);
    float s = 0.f;
    for (int64_t d = 0; d < hd; ++d) s = fmaf(qs[warp * hd + d], ks[lane * (hd + 1) + d], s);
    if (p.softcap > 0.f) s = p.softcap * tanhf(s / p.softcap);
    float tile_max = warp_max(valid ? s : -FLT_MAX);
    if (tile_max == -FLT_MAX) continue;  // nothing visible in this tile for this query
    float m_new = fmaxf(m, tile_max);
    float alpha = __expf(m - m_new);
    float pj = valid ? __expf(s - m_new) : 0.f;
    l = l * alpha + warp_sum(pj);
#pragma unroll
    for (int c = 0; c < ATT_MAXC; ++c) acc[c] *= alpha;
    for (int t = 0; t < ATT_KT; ++t) {
      float pt = __shfl_sync(FULL_MASK, pj, t);
#pragma unroll
      for (int c = 0; c < ATT_MAXC; ++c) {
        int64_t d = lane + 32 * c;
        if (d < hd) acc[c] = fmaf(pt, vs[t * hd + d], acc[c]);
      }
    }
    m = m_new;
  }
  if (!active) return;
  const float inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
  for (int c = 0; c < ATT_MAXC; ++c) {
    int64_t d = lane + 32 * c;
    if (d < hd) p.out[((bT + i) * p.Hq + h) * hd + d] = acc[c] * inv;
  }
}
void launch_attention(const AttParams& p, int64_t B, cudaStream_t s) {
  if (p.T <= 0 || p.Hq <= 0 || B <= 0) return;
  size_t smem = size_t(ATT_WARPS * p.hd + ATT_KT * (p.hd + 1) + ATT_KT * p.hd) * 4;
  CUDA_CHECK(cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  dim3 grid(ceil_div(p.T, ATT_WARPS), unsigned(p.Hq), unsigned(B));
  SPX_LAUNCH(grid, ATT_WARPS * 32, smem, s, attention_kernel)(p);
  CUDA_CHECK_LAUNCH();
}
}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& o) {
  const int64_t T = q.dim(0), Hq = q.dim(1), hd = q.dim(2), Hkv = k.dim(1);
  Session ses;
  cudaStream_t s = ses.stream();
  DeviceTensor dq = upload(q, s), dk = upload(k, s), dv = upload(v, s);
  DeviceBuffer out(size_t(q.numel()) * 4, s);
  AttParams p{dq.data(), dk.data(), dv.data(), q.dtype, k.dtype, v.dtype, T, Hq, Hkv, hd,
              o.scale > 0.f ? o.scale : float(1.0 / std::sqrt(double(hd))), o.softcap, o.causal, o.window,
              out.as<float>(), Hq * hd, hd, Hkv * hd, hd, Hkv * hd, hd};
  launch_attention(p, 1, s);
  Tensor r = download(out.get(), q.shape, DType::F32, s);
  ses.sync();
  return r;
}

int64_t attention_max_head_dim() { return 32 * ATT_MAXC; }

void attention_dev(const HeadsView& q, const HeadsView& k, const HeadsView& v, float* out, int64_t B, int64_t T,
                   int64_t Hq, int64_t Hkv, int64_t hd, float scale, float softcap, int64_t window, cudaStream_t s) {
  // The batch is gridDim.z (at most 65535) and the model forward passes any B: launch chunks of
  // at most 65535 sequences with the row pointers advanced (rows are b·T + t).
  constexpr int64_t kMaxBatch = 65535;
  for (int64_t b0 = 0; b0 < B; b0 += kMaxBatch) {
    const int64_t nb = std::min(kMaxBatch, B - b0), r0 = b0 * T;
    AttParams p{q.base + r0 * q.row, k.base + r0 * k.row, v.base + r0 * v.row, DType::F32, DType::F32, DType::F32,
                T, Hq, Hkv, hd, scale, softcap, true, window, out + r0 * Hq * hd, q.row, q.head, k.row, k.head,
                v.row, v.head};
    launch_attention(p, nb, s);
  }
}

}  // namespace cuda
}  // namespace sparsify
