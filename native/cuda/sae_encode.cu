// Fused SAE encoder: pre = relu((x - b_dec) · W_encᵀ + b_enc), then TopK or GroupMax, and AuxK
// over dead latents, without ever writing the [N, M] pre-activations (sparsify/fused_encoder.py).
//
// One CTA = 64 rows x a contiguous range of 128-latent tiles (the "split"). For each tile the
// tensor-core main loop (mma_tile.cuh) computes the 64x128 block; the epilogue stages
// relu(acc + b_enc) in shared memory (aliasing the pipeline buffers) and then, one warp per row:
//   TopK:     keeps the row's k best (value, latent) candidates in shared memory with a running
//             minimum; a value enters only if it beats the minimum (strictly), so after the first
//             tiles almost every value is rejected by one compare. Each split writes its k
//             candidates to [N, S, k]; row_topk.cuh merges the S*k candidates per row.
//   GroupMax: G = M / k; the max of each group within the tile is reduced across the warp and
//             merged into a global 64-bit key (value bits << 32 | ~latent) with atomicMax, so the
//             result does not depend on the order of the CTAs (ties -> the lower latent).
//   AuxK:     dead latents' values are stored compactly into [N, num_dead] (col_map[m] = its
//             slot or -1) and row_topk selects k_aux per row. Memory N·num_dead, never N·M unless
//             every latent is dead; above a budget the compact buffer is built in row chunks.
// When k is too large for the shared-memory candidate lists on this device (or for tests), the
// fallback computes pre-activations for a chunk of rows into a bounded buffer and runs row_topk.
//
// Semantics vs the CPU reference: x - b_dec is computed in f32 and rounded once to bf16/f16 (as
// sparsify's autocast F.linear does); ReLU before selection; selected zeros still count; ties
// go to the lower latent index; the output is sorted by (value desc, index asc), which is one of
// the orders torch.topk(sorted=False) may return.
#include <algorithm>
#include <cfloat>
#include <vector>

#include "cuda/bench_util.cuh"
#include "cuda/common.cuh"
#include "cuda/convert.cuh"
#include "cuda/cuda_context.h"
#include "cuda/cuda_ops.h"
#include "cuda/gemm_path.h"
#include "cuda/mma_tile.cuh"
#include "cuda/row_topk.cuh"
#include "cuda/wgmma_tile.cuh"
#include "cuda/device_ops.h"

namespace sparsify {
namespace cuda {

namespace {
constexpr int ENC_BM = 64;
constexpr int ENC_STAGES = 3;
constexpr int STAGE_LD = TILE_N + 4;  // padded row stride (floats) of the staged tile
constexpr int PIPE_BYTES = ENC_STAGES * stage_bytes<ENC_BM>();
constexpr int STAGED_BYTES = ENC_BM * STAGE_LD * 4;
constexpr int REGION_BYTES = PIPE_BYTES > STAGED_BYTES ? PIPE_BYTES : STAGED_BYTES;
// The wgmma main loop (sm_90, once gemm_path() chose it): 64-wide K slices, 1024-byte aligned.
constexpr int ENC_WG_STAGES = wg_stages<ENC_BM>();
constexpr int WG_PIPE_BYTES = ENC_WG_STAGES * wg_stage_bytes<ENC_BM>();
constexpr int WG_REGION_BYTES = WG_PIPE_BYTES > STAGED_BYTES ? WG_PIPE_BYTES : STAGED_BYTES;
// Bytes before the candidate lists: the pipeline/staging region (+ alignment slack for wgmma).
constexpr size_t region_bytes(bool wg) { return wg ? size_t(WG_REGION_BYTES) + 1024 : size_t(REGION_BYTES); }
constexpr size_t COMPACT_BUDGET = size_t(256) << 20;  // bytes for dense/compact scratch buffers

struct EncParams {
  const float* b_enc;
  int64_t N, M, Kp;
  int k;
  int tiles_per_split;
  int S;
  float* part_val;  // [N, S, k] or null (TopK off)
  int* part_idx;
  unsigned long long* gm_keys;  // [N, k] or null (GroupMax off)
  int64_t G;
  const int* col_map;  // [M]: compact slot or -1; null = identity (dense store)
  float* compact;      // [N, compact_ld] or null
  int64_t compact_ld;
};

__device__ __forceinline__ void topk_row_update(const float* __restrict__ row, float* cv, int* ci, float& thr,
                                                int& pos, int k, int64_t n0, int lane) {
#pragma unroll
  for (int j = 0; j < TILE_N / 32; ++j) {
    float v = row[lane + 32 * j];
    unsigned want = __ballot_sync(FULL_MASK, v > thr);
    while (want) {
      int src = __ffs(int(want)) - 1;
      want &= want - 1;
      float cand = __shfl_sync(FULL_MASK, v, src);
      if (cand > thr) {  // warp-uniform: thr may have risen since the ballot
        if (lane == 0) {
          cv[pos] = cand;
          ci[pos] = int(n0 + src + 32 * j);
        }
        __syncwarp();
        // The next entry to evict: the worst kept one = smallest value and, among equal values,
        // the LARGEST latent (the CPU heap's order: ties keep the lower latent). With values
        // (1@0, 1@1, 2@2) and k = 2 this keeps {0, 2}. Slot position breaks the remaining ties
        // (only the (-FLT_MAX, -1) sentinels), so the choice is deterministic.
        // Start above every value, +inf included: with FLT_MAX, k entries of +inf (an inf in x)
        // would leave mp = 0x7fffffff and the next insertion would write cv[0x7fffffff].
        float mv = __int_as_float(0x7f800000);
        int mi = -1, mp = 0x7fffffff;
        for (int i = lane; i < k; i += 32) {
          float x = cv[i];
          int xi = ci[i];
          if (x < mv || (x == mv && xi > mi)) {  // i ascends: equal (value, latent) keep the lower slot
            mv = x;
            mi = xi;
            mp = i;
          }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
          float ov = __shfl_xor_sync(FULL_MASK, mv, o);
          int oi = __shfl_xor_sync(FULL_MASK, mi, o);
          int op = __shfl_xor_sync(FULL_MASK, mp, o);
          if (ov < mv || (ov == mv && (oi > mi || (oi == mi && op < mp)))) {
            mv = ov;
            mi = oi;
            mp = op;
          }
        }
        thr = mv;
        pos = mp;
        __syncwarp();
      }
    }
  }
}

__device__ __forceinline__ unsigned long long gm_key(float v, int64_t col) {
  return (static_cast<unsigned long long>(__float_as_uint(v)) << 32) | (0xffffffffu - uint32_t(col));
}

// WG: the wgmma main loop (wgmma_tile.cuh) instead of mma.sync; same epilogue.
template <class T, bool WG>
// Two CTAs per SM (<= 128 registers): without the hint ptxas chose 64 registers and spilled on sm_90a.
__global__ void __launch_bounds__(MMA_THREADS, 2) encode_kernel(EncParams p, const T* __restrict__ X,
                                                             const T* __restrict__ W) {
  SPX_DYNAMIC_SHARED(char, smem_raw, 128);
  char* smem = smem_raw;
  if constexpr (WG) smem += wg_align1024(smem_raw) - smem_u32(smem_raw);
  float* staged = reinterpret_cast<float*>(smem);
  float* cval = reinterpret_cast<float*>(smem + (WG ? WG_REGION_BYTES : REGION_BYTES));
  int* cidx = reinterpret_cast<int*>(cval + ENC_BM * p.k);
  float* thr = reinterpret_cast<float*>(cidx + ENC_BM * p.k);
  int* tpos = reinterpret_cast<int*>(thr + ENC_BM);
  const bool do_topk = p.part_val != nullptr;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warp_m = warp >> 2, warp_n = warp & 3;
  const int64_t m0 = int64_t(blockIdx.x) * ENC_BM;
  const int split = blockIdx.y;
  const int ntiles = int((p.M + TILE_N - 1) / TILE_N);
  if (do_topk) {
    for (int i = threadIdx.x; i < ENC_BM * p.k; i += blockDim.x) {
      cval[i] = -FLT_MAX;  // below every relu output
      cidx[i] = -1;
    }
    for (int r = threadIdx.x; r < ENC_BM; r += blockDim.x) {
      thr[r] = -FLT_MAX;
      tpos[r] = 0;
    }
  }
  __syncthreads();
  const int t_begin = split * p.tiles_per_split, t_end = min(t_begin + p.tiles_per_split, ntiles);
  for (int tile = t_begin; tile < t_end; ++tile) {
    const int64_t n0 = int64_t(tile) * TILE_N;
    // relu(acc + b_enc) of tile (r, c) into the staged block; columns past M never win.
    auto stage = [&](int r, int c, float a) {
      const int64_t col = n0 + c;
      float v = -FLT_MAX;
      if (col < p.M) {
        float pre = a + p.b_enc[col];
        v = pre > 0.f ? pre : 0.f;  // relu (sparsify selects after the ReLU)
      }
      staged[r * STAGE_LD + c] = v;
    };
    if constexpr (WG) {
      float d[wg_regs<ENC_BM>()];
      wg_tile<T, ENC_BM, ENC_WG_STAGES>(X, W, p.N, p.M, p.Kp, m0, n0, smem_u32(smem), d);
#pragma unroll
      for (int i = 0; i < wg_regs<ENC_BM>(); ++i) stage(wg_row<ENC_BM>(i), wg_col<ENC_BM>(i), d[i]);
    } else {
      float acc[ENC_BM / 32][4][4];
      mma_tile<T, ENC_BM, ENC_STAGES>(X, W, p.N, p.M, p.Kp, m0, n0, smem, acc);
#pragma unroll
      for (int mi = 0; mi < ENC_BM / 32; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            stage(warp_m * (ENC_BM / 2) + mi * 16 + (lane >> 2) + (e >> 1) * 8,
                  warp_n * 32 + ni * 8 + (lane & 3) * 2 + (e & 1), acc[mi][ni][e]);
    }
    __syncthreads();
    for (int r = warp; r < ENC_BM; r += MMA_THREADS / 32) {
      const int64_t n = m0 + r;
      if (n >= p.N) continue;  // warp-uniform
      const float* row = staged + r * STAGE_LD;
      if (do_topk) {
        float t = thr[r];
        int ps = tpos[r];
        topk_row_update(row, cval + r * p.k, cidx + r * p.k, t, ps, p.k, n0, lane);
        if (lane == 0) {
          thr[r] = t;
          tpos[r] = ps;
        }
      }
      if (p.gm_keys) {
        int64_t last = min(n0 + TILE_N, p.M) - 1;
        for (int64_t g = n0 / p.G; g <= last / p.G; ++g) {
          unsigned long long best = 0;
#pragma unroll
          for (int j = 0; j < TILE_N / 32; ++j) {
            int64_t col = n0 + lane + 32 * j;
            if (col < p.M && col / p.G == g) {
              unsigned long long key = gm_key(row[lane + 32 * j], col);
              best = key > best ? key : best;
            }
          }
#pragma unroll
          for (int o = 16; o > 0; o >>= 1) {
            unsigned long long other = __shfl_xor_sync(FULL_MASK, best, o);
            best = other > best ? other : best;
          }
          if (lane == 0 && best) atomicMax(&p.gm_keys[n * p.k + g], best);
        }
      }
      if (p.compact) {
#pragma unroll
        for (int j = 0; j < TILE_N / 32; ++j) {
          int64_t col = n0 + lane + 32 * j;
          if (col < p.M) {
            int64_t slot = p.col_map ? p.col_map[col] : col;
            if (slot >= 0) p.compact[n * p.compact_ld + slot] = row[lane + 32 * j];
          }
        }
      }
    }
    __syncthreads();  // the next tile's pipeline overwrites the staged block
  }
  if (do_topk) {
    for (int r = warp; r < ENC_BM; r += MMA_THREADS / 32) {
      const int64_t n = m0 + r;
      if (n >= p.N) continue;
      size_t base = (size_t(n) * p.S + split) * p.k;
      for (int i = lane; i < p.k; i += 32) {
        p.part_val[base + i] = cval[r * p.k + i];
        p.part_idx[base + i] = cidx[r * p.k + i];
      }
    }
  }
}

__global__ void groupmax_finalize(const unsigned long long* __restrict__ keys, int64_t n, float* __restrict__ vals,
                                  int* __restrict__ idx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    unsigned long long key = keys[i];
    vals[i] = __uint_as_float(uint32_t(key >> 32));
    idx[i] = int(0xffffffffu - uint32_t(key & 0xffffffffu));
  }
}

size_t topk_smem_bytes(int k, bool wg) { return region_bytes(wg) + size_t(ENC_BM) * k * 8 + ENC_BM * 8; }

// Shared memory: the region, plus the candidate lists when TopK is on (p.part_val).
template <class T>
void launch_encode(const EncParams& p, const T* X, const T* W, cudaStream_t s) {
  if (p.N == 0) return;
  const bool wg = gemm_path(s).wgmma;
  const size_t smem = p.part_val ? topk_smem_bytes(p.k, wg) : region_bytes(wg);
  auto kernel = wg ? encode_kernel<T, true> : encode_kernel<T, false>;
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  dim3 grid(ceil_div(p.N, ENC_BM), unsigned(p.S));
  SPX_LAUNCH(grid, MMA_THREADS, smem, s, kernel)(p, X, W);
  CUDA_CHECK_LAUNCH();
}

// Splits of the latent tiles so that about two CTAs per SM are in flight.
void choose_splits(int64_t N, int64_t M, int sms, int* S, int* tps) {
  int ntiles = int((M + TILE_N - 1) / TILE_N);
  int64_t rowblocks = (N + ENC_BM - 1) / ENC_BM;
  int64_t want = std::max<int64_t>(1, (2 * int64_t(sms) + rowblocks - 1) / std::max<int64_t>(rowblocks, 1));
  int s = int(std::min<int64_t>(want, ntiles));
  *tps = (ntiles + s - 1) / s;
  *S = (ntiles + *tps - 1) / *tps;
}

// One encoder pass over N rows and M latents, its tile splits chosen; the caller adds the outputs.
EncParams pass_params(const float* b_enc, int64_t N, int64_t M, int64_t Kp, int k, int sms) {
  EncParams p{};
  p.b_enc = b_enc;
  p.N = N;
  p.M = M;
  p.Kp = Kp;
  p.k = k;
  choose_splits(N, M, sms, &p.S, &p.tiles_per_split);
  return p;
}

// relu pre-activations of N rows, written dense into out [N, ld] (the unfused fallback's pass, and
// returnPreActs); the same kernel and tiles as the fused pass, so its values are bitwise the fused ones.
template <class T>
void dense_relu_pass(const T* X, const T* W, const float* b_enc, int64_t N, int64_t M, int64_t Kp, int k, int sms,
                     float* out, int64_t ld, cudaStream_t s) {
  EncParams p = pass_params(b_enc, N, M, Kp, k, sms);
  p.compact = out;
  p.compact_ld = ld;
  launch_encode<T>(p, X, W, s);
}

// The fused TopK pass + merge on device buffers (also used by the benchmark).
template <class T>
void fused_topk(const T* X, const T* W, const float* b_enc, int64_t N, int64_t M, int64_t Kp, int k, int sms,
                const int* col_map, float* compact, int64_t compact_ld, float* out_v, int* out_i, cudaStream_t s) {
  EncParams p = pass_params(b_enc, N, M, Kp, k, sms);
  DeviceBuffer pv(size_t(N) * p.S * k * 4, s), pi(size_t(N) * p.S * k * 4, s);
  p.part_val = pv.as<float>();
  p.part_idx = pi.as<int>();
  p.col_map = col_map;
  p.compact = compact;
  p.compact_ld = compact_ld;
  launch_encode<T>(p, X, W, s);
  RowTopkParams rp{};
  rp.vals = p.part_val;
  rp.stride = int64_t(p.S) * k;
  rp.L = p.S * k;
  rp.idx_arr = p.part_idx;
  rp.k = k;
  rp.out_v = out_v;
  rp.out_i = out_i;
  row_topk(rp, N, s);
}

// The whole selection on device buffers: X [N, Kp] and W [M, Kp] of T (converted, zero-padded,
// X already x - b_dec), b_enc f32 [M]. Results stay on the device (DeviceEncodeOut).
template <class T>
DeviceEncodeOut encode_device(Session& ses, const T* X_, const T* Wt, const float* bptr, int64_t N, int64_t D,
                              int64_t M, const EncodeOptions& o) {
  const int64_t Kp = pad32(D);
  const int k = int(o.k);
  DeviceEncodeOut res;

  // AuxK bookkeeping on the host: dead latents in order, and each latent's compact slot.
  std::vector<int> dead_list, col_map;
  int k_aux = 0;
  if (o.dead_mask.defined() && o.k_aux > 0) {
    const Tensor dm_host = host_copy(o.dead_mask);  // small [M]; may come from the device
    const int32_t* dm = dm_host.data<int32_t>();
    col_map.assign(size_t(M), -1);
    for (int64_t m = 0; m < M; ++m)
      if (dm[m]) {
        col_map[size_t(m)] = int(dead_list.size());
        dead_list.push_back(int(m));
      }
    k_aux = int(std::min<int64_t>(o.k_aux, int64_t(dead_list.size())));
  }
  const int64_t num_dead = int64_t(dead_list.size());

  cudaStream_t s = ses.stream();
  const cudaDeviceProp& prop = ses.props();
  res.vals = DeviceBuffer(size_t(N) * k * 4, s);
  res.idx = DeviceBuffer(size_t(N) * k * 4, s);
  res.aux_v = DeviceBuffer(size_t(N) * k_aux * 4, s);
  res.aux_i = DeviceBuffer(size_t(N) * k_aux * 4, s);
  res.k_aux = k_aux;
  DeviceBuffer &vals = res.vals, &idx = res.idx, &aux_v = res.aux_v, &aux_i = res.aux_i;
  DeviceBuffer d_map, d_dead;
  if (k_aux > 0) {
    d_map = DeviceBuffer(size_t(M) * 4, s);
    d_dead = DeviceBuffer(size_t(num_dead) * 4, s);
    res.host_col_map = std::move(col_map);  // the sources must outlive the async copies
    res.host_dead_list = std::move(dead_list);
    CUDA_CHECK(cudaMemcpyAsync(d_map.get(), res.host_col_map.data(), size_t(M) * 4, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(
        cudaMemcpyAsync(d_dead.get(), res.host_dead_list.data(), size_t(num_dead) * 4, cudaMemcpyHostToDevice, s));
  }

  const bool topk_fits =
      topk_smem_bytes(k, gemm_path(s).wgmma) <= size_t(prop.sharedMemPerBlockOptin) && k <= ROW_TOPK_MAX_K;
  // GroupMax needs no shared-memory lists, so it is always fused.
  const bool main_in_pass = o.groupmax || (!o.force_unfused && topk_fits);
  const bool aux_in_pass = k_aux > 0 && main_in_pass && size_t(N) * num_dead * 4 <= COMPACT_BUDGET;
  res.fused = main_in_pass;
  DeviceBuffer compact;
  if (aux_in_pass) compact = DeviceBuffer(size_t(N) * num_dead * 4, s);

  if (main_in_pass && o.groupmax) {
    DeviceBuffer keys(size_t(N) * k * 8, s);
    CUDA_CHECK(cudaMemsetAsync(keys.get(), 0, keys.bytes(), s));
    EncParams p = pass_params(bptr, N, M, Kp, k, prop.multiProcessorCount);
    p.gm_keys = keys.as<unsigned long long>();
    p.G = M / k;
    p.col_map = aux_in_pass ? d_map.as<int>() : nullptr;
    p.compact = aux_in_pass ? compact.as<float>() : nullptr;
    p.compact_ld = num_dead;
    launch_encode<T>(p, X_, Wt, s);
    if (N * k > 0) {
      SPX_LAUNCH(unsigned(std::min<int64_t>((N * k + 255) / 256, 65535)), 256, 0, s, groupmax_finalize)(
          keys.as<unsigned long long>(), N * k, vals.as<float>(), idx.as<int>());
      CUDA_CHECK_LAUNCH();
    }
  } else if (main_in_pass) {
    fused_topk<T>(X_, Wt, bptr, N, M, Kp, k, prop.multiProcessorCount,
                  aux_in_pass ? d_map.as<int>() : nullptr, aux_in_pass ? compact.as<float>() : nullptr, num_dead,
                  vals.as<float>(), idx.as<int>(), s);
  }
  if (aux_in_pass) {
    RowTopkParams rp{};
    rp.vals = compact.as<float>();
    rp.stride = num_dead;
    rp.L = int(num_dead);
    rp.idx_map = d_dead.as<int>();
    rp.k = k_aux;
    rp.out_v = aux_v.as<float>();
    rp.out_i = aux_i.as<int>();
    row_topk(rp, N, s);
  }
  if (!main_in_pass || (k_aux > 0 && !aux_in_pass)) {
    // Chunked fallback: dense relu pre-activations for `rows` rows at a time, then row_topk.
    int64_t rows = std::max<int64_t>(1, std::min<int64_t>(N, int64_t(COMPACT_BUDGET / (size_t(M) * 4))));
    DeviceBuffer dense(size_t(rows) * M * 4, s);
    for (int64_t r0 = 0; r0 < N; r0 += rows) {
      int64_t nr = std::min(rows, N - r0);
      dense_relu_pass<T>(X_ + r0 * Kp, Wt, bptr, nr, M, Kp, k, prop.multiProcessorCount, dense.as<float>(), M, s);
      RowTopkParams rp{};
      rp.vals = dense.as<float>();
      rp.stride = M;
      if (!main_in_pass) {
        rp.L = int(M);
        rp.k = k;
        rp.out_v = vals.as<float>() + r0 * k;
        rp.out_i = idx.as<int>() + r0 * k;
        row_topk(rp, nr, s);
      }
      if (k_aux > 0 && !aux_in_pass) {
        rp.L = int(num_dead);
        rp.gather = d_dead.as<int>();
        rp.k = k_aux;
        rp.out_v = aux_v.as<float>() + r0 * k_aux;
        rp.out_i = aux_i.as<int>() + r0 * k_aux;
        row_topk(rp, nr, s);
      }
    }
  }
  if (o.pre_acts) {
    res.pre = DeviceBuffer(size_t(N) * M * 4, s);
    dense_relu_pass<T>(X_, Wt, bptr, N, M, Kp, k, prop.multiProcessorCount, res.pre.as<float>(), M, s);
  }
  return res;
}

// Host x in, host results out, weights already on the device (b_dec any float dtype or null).
template <class T>
EncodeResult encode_core(Session& ses, const Tensor& x, const T* Wt, const float* bptr, const void* bdec,
                         DType bdec_dt, int64_t M, const EncodeOptions& o) {
  const int64_t N = x.dim(0), D = x.dim(1), Kp = pad32(D);
  cudaStream_t s = ses.stream();
  DeviceTensor dx = upload(x, s);
  DeviceBuffer X(size_t(N * Kp) * sizeof(T), s);
  convert_pad<T>(dx.data(), x.dtype, N, D, bdec, bdec_dt, X.as<T>(), Kp, s);
  DeviceEncodeOut d = encode_device<T>(ses, X.as<T>(), Wt, bptr, N, D, M, o);
  EncodeResult res;
  res.fused = d.fused;
  res.acts = download(d.vals.get(), {N, o.k}, DType::F32, s);
  res.indices = download(d.idx.get(), {N, o.k}, DType::I32, s);
  if (d.k_aux > 0) {
    res.aux_acts = download(d.aux_v.get(), {N, int64_t(d.k_aux)}, DType::F32, s);
    res.aux_indices = download(d.aux_i.get(), {N, int64_t(d.k_aux)}, DType::I32, s);
  }
  if (o.pre_acts) res.pre_acts = download(d.pre.get(), {N, M}, DType::F32, s);
  ses.sync();
  return res;
}

template <class T>
EncodeResult encode_t(const Tensor& x, const Tensor& w_enc, const Tensor& b_enc, const EncodeOptions& o) {
  const int64_t D = x.dim(1), M = w_enc.dim(0), Kp = pad32(D);
  Session ses;
  cudaStream_t s = ses.stream();
  DeviceTensor dw = upload(w_enc, s), db = upload(b_enc.to(DType::F32), s);
  DeviceTensor dbd;
  if (o.b_dec.defined()) dbd = upload(o.b_dec, s);
  DeviceBuffer Wt(size_t(M * Kp) * sizeof(T), s);
  convert_pad<T>(dw.data(), w_enc.dtype, M, D, nullptr, DType::F32, Wt.as<T>(), Kp, s);
  return encode_core<T>(ses, x, Wt.as<T>(), static_cast<const float*>(db.data()),
                        o.b_dec.defined() ? dbd.data() : nullptr, o.b_dec.dtype, M, o);
}
}  // namespace

EncodeResult topk_encode(const Tensor& x, const Tensor& w_enc, const Tensor& b_enc, const EncodeOptions& o) {
  return o.compute == DType::F16 ? encode_t<__half>(x, w_enc, b_enc, o) : encode_t<__nv_bfloat16>(x, w_enc, b_enc, o);
}

DeviceEncodeOut encode_on_device(Session& ses, DType compute, const void* X, const void* W, const float* b_enc,
                                 int64_t N, int64_t D, int64_t M, const EncodeOptions& o) {
  if (compute == DType::F16)
    return encode_device<__half>(ses, static_cast<const __half*>(X), static_cast<const __half*>(W), b_enc, N, D, M, o);
  return encode_device<__nv_bfloat16>(ses, static_cast<const __nv_bfloat16*>(X), static_cast<const __nv_bfloat16*>(W),
                                      b_enc, N, D, M, o);
}

// ---- encoder weights kept on the device ----
ResidentEncoder::~ResidentEncoder() {
  // cudaFree (not stream-ordered) waits for work that may still read these buffers.
  for (void* p : {w, b_enc, b_dec})
    if (p) cudaFree(p);
}

std::shared_ptr<ResidentEncoder> make_resident_encoder(const Tensor& w_enc, const Tensor& b_enc, const Tensor& b_dec,
                                                       DType compute) {
  auto r = std::make_shared<ResidentEncoder>();
  r->M = w_enc.dim(0);
  r->D = w_enc.dim(1);
  r->compute = compute;
  const int64_t Kp = pad32(r->D);
  Session ses;
  cudaStream_t s = ses.stream();
  CUDA_CHECK(cudaMalloc(&r->w, size_t(r->M * Kp) * 2));
  CUDA_CHECK(cudaMalloc(&r->b_enc, size_t(r->M) * 4));
  if (b_dec.defined()) CUDA_CHECK(cudaMalloc(&r->b_dec, size_t(r->D) * 4));
  DeviceTensor dw = upload(w_enc, s);
  if (compute == DType::F16)
    convert_pad<__half>(dw.data(), w_enc.dtype, r->M, r->D, nullptr, DType::F32, static_cast<__half*>(r->w), Kp, s);
  else
    convert_pad<__nv_bfloat16>(dw.data(), w_enc.dtype, r->M, r->D, nullptr, DType::F32,
                               static_cast<__nv_bfloat16*>(r->w), Kp, s);
  Tensor bf = b_enc.to(DType::F32);
  CUDA_CHECK(cudaMemcpyAsync(r->b_enc, bf.raw(), size_t(r->M) * 4, cudaMemcpyDefault, s));
  Tensor bd;
  if (b_dec.defined()) {
    bd = b_dec.to(DType::F32);
    CUDA_CHECK(cudaMemcpyAsync(r->b_dec, bd.raw(), size_t(r->D) * 4, cudaMemcpyDefault, s));
  }
  ses.sync();  // the host copies above must stay alive until here
  return r;
}

EncodeResult resident_encode(const ResidentEncoder& enc, const Tensor& x, const EncodeOptions& o) {
  Session ses;
  if (enc.compute == DType::F16)
    return encode_core<__half>(ses, x, static_cast<const __half*>(enc.w), static_cast<const float*>(enc.b_enc),
                               enc.b_dec, DType::F32, enc.M, o);
  return encode_core<__nv_bfloat16>(ses, x, static_cast<const __nv_bfloat16*>(enc.w),
                                    static_cast<const float*>(enc.b_enc), enc.b_dec, DType::F32, enc.M, o);
}

int64_t fused_topk_max_k() {
  // No Session (and no lock): this is called on the JS thread.
  ProbeResult pr = probe();
  if (pr.devices == 0) return 0;
  int optin = 0;
  if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  size_t limit = size_t(optin);
  // sm_90 may run the wgmma variant (larger region): count with it there, to be safe.
  const size_t base = topk_smem_bytes(0, pr.cc_major == 9 && pr.cc_minor == 0);
  if (limit <= base) return 0;
  return int64_t(std::min<size_t>((limit - base) / (size_t(ENC_BM) * 8), ROW_TOPK_MAX_K));
}

double bench_encode_ms(int64_t N, int64_t D, int64_t M, int64_t k, int iters) {
  Session ses;
  cudaStream_t s = ses.stream();
  int64_t Kp = pad32(D);
  if (topk_smem_bytes(int(k), gemm_path(s).wgmma) > size_t(ses.props().sharedMemPerBlockOptin))
    fail(ErrorKind::Value, "bench encode: k=" + std::to_string(k) + " does not fit the fused kernel on this device");
  DeviceBuffer X(size_t(N * Kp) * 2, s), W(size_t(M * Kp) * 2, s), b(size_t(M) * 4, s);
  DeviceBuffer v(size_t(N * k) * 4, s), i(size_t(N * k) * 4, s);
  fill_random_device_bf16(X.get(), N * Kp, 3, s);
  fill_random_device_bf16(W.get(), M * Kp, 4, s);
  CUDA_CHECK(cudaMemsetAsync(b.get(), 0, b.bytes(), s));
  int sms = ses.props().multiProcessorCount;
  double ms = median_ms(s, iters, [&] {
    fused_topk<__nv_bfloat16>(X.as<__nv_bfloat16>(), W.as<__nv_bfloat16>(), b.as<float>(), N, M, Kp, int(k), sms,
                              nullptr, nullptr, 0, v.as<float>(), i.as<int>(), s);
  });
  ses.sync();
  return ms;
}

}  // namespace cuda
}  // namespace sparsify
