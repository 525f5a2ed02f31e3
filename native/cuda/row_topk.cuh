// Exact per-row top-k selection by radix select, one CTA per row: four 8-bit histogram passes
// over order-preserving 32-bit keys find the k-th largest value; elements above it are taken,
// ties at it fill the remaining slots — the lowest indices among them, found by a second radix
// select over the indices when there are more ties than slots (the CPU reference keeps the
// lower index; without this the atomics' arrival order picked them) — and the k winners are
// then bitonic-sorted in shared memory by (value desc, index asc): the output is deterministic.
// Preconditions (checked by the callers): k <= L, and indices unique within a row.
// Used to merge the fused encoder's per-split candidates, for AuxK over dead latents (sparsify's in
// sae_encode.cu, SAELens's in batchtopk_step.cu), and by the chunked (unfused) fallback. CPU
// reference: torch.topk(..., sorted=True) semantics with ties broken by the lower latent index;
// sparsify uses sorted=False, so any order is compatible.
#pragma once
#include <cfloat>

#include "cuda/common.cuh"
#include "cuda/cuda_check.h"

namespace sparsify {
namespace cuda {

struct RowTopkParams {
  const float* vals;    // row n, element q: vals[n * stride + q]
  int64_t stride;
  int L;                // elements per row
  const int* gather;    // optional: element j of the row is q = gather[j] (else q = j)
  const int* idx_arr;   // optional: index of element q = idx_arr[n * stride + q]
  const int* idx_map;   // optional: index of element q = idx_map[q] (else q)
  int k;
  float* out_v;         // [rows, k] (row n at out_v + n * k)
  int* out_i;
};

__device__ __forceinline__ uint32_t order_key(float v) {
  uint32_t u = __float_as_uint(v);
  if (u == 0x80000000u) u = 0u;  // -0 == +0 as floats: one key, so a tie
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// a before b in the output order
__device__ __forceinline__ bool topk_before(float av, int ai, float bv, int bi) {
  return av > bv || (av == bv && unsigned(ai) < unsigned(bi));
}

// Internal linkage: each file that includes this header (the encoder, the kinds' AuxK) gets its
// own copy, so they link together.
static __global__ void row_topk_kernel(RowTopkParams p, int P /* next pow2 >= k */) {
  SPX_DYNAMIC_SHARED(char, sm, 16);
  float* sv = reinterpret_cast<float*>(sm);
  int* si = reinterpret_cast<int*>(sv + P);
  __shared__ unsigned hist[256];
  __shared__ unsigned s_desired, s_mask, s_kk, s_gt, s_eq, s_eqcount;
  const int64_t n = blockIdx.x;
  const float* row = p.vals + n * p.stride;
  const int tid = threadIdx.x;
  auto q_of = [&](int j) -> int64_t { return p.gather ? p.gather[j] : j; };
  auto index_of = [&](int64_t q) -> int { return p.idx_arr ? p.idx_arr[n * p.stride + q] : (p.idx_map ? p.idx_map[q] : int(q)); };
  if (tid == 0) {
    s_desired = 0;
    s_mask = 0;
    s_kk = unsigned(p.k);
  }
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = tid; i < 256; i += blockDim.x) hist[i] = 0;
    __syncthreads();
    const unsigned desired = s_desired, mask = s_mask;
    for (int j = tid; j < p.L; j += blockDim.x) {
      uint32_t key = order_key(row[q_of(j)]);
      if ((key & mask) == desired) atomicAdd(&hist[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (tid == 0) {
      unsigned kk = s_kk, cum = 0;
      for (int b = 255; b >= 0; --b) {
        if (cum + hist[b] >= kk) {
          s_kk = kk - cum;
          s_desired = desired | (unsigned(b) << shift);
          s_mask = mask | (255u << shift);
          s_eqcount = hist[b];  // after the last pass: the number of elements equal to the k-th
          break;
        }
        cum += hist[b];
      }
    }
    __syncthreads();
  }
  const unsigned kth = s_desired, ties = s_kk, greater = unsigned(p.k) - ties;
  // More elements equal the k-th value than slots remain: keep the `ties` lowest indices
  // (unsigned order) among them, by the same radix select run on the indices, ascending.
  unsigned max_tie_index = 0xffffffffu;
  if (s_eqcount > ties) {  // block-uniform (shared value, read after a barrier)
    __syncthreads();       // every thread has read s_eqcount / s_desired / s_kk above
    if (tid == 0) {
      s_desired = 0;
      s_mask = 0;
      s_kk = ties;
    }
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int i = tid; i < 256; i += blockDim.x) hist[i] = 0;
      __syncthreads();
      const unsigned desired = s_desired, mask = s_mask;
      for (int j = tid; j < p.L; j += blockDim.x) {
        const int64_t q = q_of(j);
        if (order_key(row[q]) != kth) continue;
        const unsigned u = unsigned(index_of(q));
        if ((u & mask) == desired) atomicAdd(&hist[(u >> shift) & 255u], 1u);
      }
      __syncthreads();
      if (tid == 0) {
        unsigned kk = s_kk, cum = 0;
        for (int b = 0; b < 256; ++b) {
          if (cum + hist[b] >= kk) {
            s_kk = kk - cum;
            s_desired = desired | (unsigned(b) << shift);
            s_mask = mask | (255u << shift);
            break;
          }
          cum += hist[b];
        }
      }
      __syncthreads();
    }
    max_tie_index = s_desired;
    __syncthreads();  // s_desired is read by all before anything below is written
  }
  if (tid == 0) {
    s_gt = 0;
    s_eq = 0;
  }
  for (int i = tid; i < P; i += blockDim.x) {  // sentinels sort last
    sv[i] = -FLT_MAX;
    si[i] = -1;
  }
  __syncthreads();
  for (int j = tid; j < p.L; j += blockDim.x) {
    int64_t q = q_of(j);
    float v = row[q];
    uint32_t key = order_key(v);
    int slot = -1;
    if (key > kth) {
      slot = int(atomicAdd(&s_gt, 1u));
    } else if (key == kth && unsigned(index_of(q)) <= max_tie_index) {
      unsigned e = atomicAdd(&s_eq, 1u);
      if (e < ties) slot = int(greater + e);  // exactly `ties` pass when indices are unique
    }
    if (slot >= 0) {
      sv[slot] = v;
      si[slot] = index_of(q);
    }
  }
  __syncthreads();
  // Bitonic sort of P slots by topk_before (sentinels have index -1 = 0xffffffff: last).
  for (int size = 2; size <= P; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = tid; i < P / 2; i += blockDim.x) {
        int lo = 2 * stride * (i / stride) + (i % stride), hi = lo + stride;
        bool up = (lo & size) == 0;
        bool sw = up ? topk_before(sv[hi], si[hi], sv[lo], si[lo]) : topk_before(sv[lo], si[lo], sv[hi], si[hi]);
        if (sw) {
          float tv = sv[lo]; sv[lo] = sv[hi]; sv[hi] = tv;
          int ti = si[lo]; si[lo] = si[hi]; si[hi] = ti;
        }
      }
      __syncthreads();
    }
  }
  for (int i = tid; i < p.k; i += blockDim.x) {
    p.out_v[n * p.k + i] = sv[i];
    p.out_i[n * p.k + i] = si[i];
  }
}

inline int next_pow2(int k) {
  int P = 1;
  while (P < k) P <<= 1;
  return P;
}

// Largest k row_topk accepts (its sort buffer lives in shared memory).
constexpr int ROW_TOPK_MAX_K = 8192;

static inline void row_topk(const RowTopkParams& p, int64_t rows, cudaStream_t s) {
  if (rows == 0 || p.k == 0) return;
  // A clear error instead of a failed launch (shared memory) or sentinel (-1) indices that a
  // decoder would use as a row of W.
  if (p.k > ROW_TOPK_MAX_K || p.k > p.L)
    fail(ErrorKind::Value, "row_topk: k=" + std::to_string(p.k) + " must be <= min(" + std::to_string(ROW_TOPK_MAX_K) +
                               ", candidates=" + std::to_string(p.L) + ")");
  int P = next_pow2(p.k);
  size_t smem = size_t(P) * 8;
  CUDA_CHECK(cudaFuncSetAttribute(row_topk_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  SPX_LAUNCH(unsigned(rows), 256, smem, s, row_topk_kernel)(p, P);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace sparsify
