// Muon's update of one 2-D parameter on the device (sparsify/muon.py; the CPU reference is
// optimizer_update's Muon branch + newton_schulz in native/cpu/optim.cpp):
//   p *= 1 − lr·wd                                  decoupled weight decay (wd > 0)
//   buf = lerp(buf, g, 1 − μ);  g = nesterov ? lerp(g, buf, μ) : buf      (μ > 0)
//   O = NewtonSchulz5(g)                            on the smaller side (X = g or gᵀ, X is [r, c], r <= c)
//   p += −lr · 0.2 · sqrt(max(rows, cols)) · O
// Newton–Schulz, quintic (a, b, c) = (3.4445, −4.7750, 2.0315), `steps` times:
//   X = g / (‖g‖_F + 1e-7);  A = X·Xᵀ;  B = b·A + c·A·A;  X = a·X + B·X
// Precision: every product is the project's tensor-core GEMM with bf16 operands and f32
// accumulation (gemm_bf16_dev); X, A, B and the element-wise steps stay f32. Upstream Muon runs
// the whole iteration in bf16 and the CPU kernel in f32, so this sits between the two: results
// match the CPU to bf16 rounding of the GEMM operands, not bit for bit. Never run on a GPU.
#include <cmath>

#include "cuda/common.cuh"
#include "cuda/convert.cuh"
#include "cuda/cuda_context.h"
#include "cuda/device_ops.h"

namespace sparsify {
namespace cuda {

namespace {
constexpr int NORM_BLOCKS = 256;  // fixed grid: a deterministic two-stage reduction

// torch.lerp's f32 formulas with the branch chosen by |w| (as the CPU `lerp`), rounded as written.
__device__ __forceinline__ float torch_lerp(float a, float b, float w) {
  return fabsf(w) < 0.5f ? lerp_small(a, b, w) : lerp_large(a, b, __fsub_rn(1.f, w));
}

__global__ void muon_pre_kernel(float* __restrict__ p, float* __restrict__ g, float* __restrict__ buf, int64_t n,
                                bool decay_on, float decay, bool momentum_on, float wb, float wg, bool nesterov) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if (decay_on) p[i] = __fmul_rn(p[i], decay);
    if (momentum_on) {
      const float b = torch_lerp(buf[i], g[i], wb);
      buf[i] = b;
      g[i] = nesterov ? torch_lerp(g[i], b, wg) : b;
    }
  }
}

// dst [C, R] = src [R, C]ᵀ through 32x33 shared tiles (coalesced both ways); row tiles stride
// over grid.y (capped at 65535), column tiles are grid.x.
__global__ void transpose_f32_kernel(const float* __restrict__ src, int64_t R, int64_t C, float* __restrict__ dst) {
  __shared__ float tile[32][33];
  const int64_t c0 = int64_t(blockIdx.x) * 32;
  for (int64_t r0 = int64_t(blockIdx.y) * 32; r0 < R; r0 += int64_t(gridDim.y) * 32) {
    for (int i = threadIdx.y; i < 32; i += blockDim.y) {
      const int64_t r = r0 + i, c = c0 + threadIdx.x;
      if (r < R && c < C) tile[i][threadIdx.x] = src[r * C + c];
    }
    __syncthreads();
    for (int i = threadIdx.y; i < 32; i += blockDim.y) {
      const int64_t c = c0 + i, r = r0 + threadIdx.x;
      if (c < C && r < R) dst[c * R + r] = tile[threadIdx.x][i];
    }
    __syncthreads();  // the tile is rewritten by the next row tile
  }
}

void transpose_f32(const float* src, int64_t R, int64_t C, float* dst, cudaStream_t s) {
  if (R == 0 || C == 0) return;
  dim3 grid(ceil_div(C, 32), unsigned(std::min<int64_t>(ceil_div(R, 32), 65535))), block(32, 8);
  SPX_LAUNCH(grid, block, 0, s, transpose_f32_kernel)(src, R, C, dst);
  CUDA_CHECK_LAUNCH();
}

// Σ x² in double (block_sum_f64: as the CPU's `ss`; f32 squares are exact in double).
__global__ void sumsq_f64_partial_kernel(const float* __restrict__ x, int64_t n, double* __restrict__ partial) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    acc += double(x[i]) * double(x[i]);
  acc = block_sum_f64(acc, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// *inv = float(1 / (sqrt(Σ partial) + 1e-7)), the CPU's normalisation factor.
__global__ void inv_norm_kernel(const double* __restrict__ partial, int n, float* __restrict__ inv) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
  acc = block_sum_f64(acc, scratch);
  if (threadIdx.x == 0) *inv = float(1.0 / (sqrt(acc) + 1e-7));
}

__global__ void scale_kernel(float* __restrict__ x, int64_t n, const float* __restrict__ f) {
  const float s = *f;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] = __fmul_rn(x[i], s);
}

// out[i] = α·x[i] + β·y[i]  (out may be x or y)
__global__ void axpby_kernel(const float* x, const float* y, int64_t n, float alpha, float beta, float* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = __fadd_rn(__fmul_rn(alpha, x[i]), __fmul_rn(beta, y[i]));
}

unsigned grid_for(int64_t n) { return unsigned(std::max<int64_t>(1, std::min<int64_t>((n + 255) / 256, 65535LL * 4))); }

void axpby(const float* x, const float* y, int64_t n, float alpha, float beta, float* out, cudaStream_t s) {
  SPX_LAUNCH(grid_for(n), 256, 0, s, axpby_kernel)(x, y, n, alpha, beta, out);
  CUDA_CHECK_LAUNCH();
}

using bf16 = __nv_bfloat16;

// X [r, c] (f32, r <= c, normalised in place first) <- NewtonSchulz(X), `steps` quintic iterations.
void newton_schulz_dev(float* X, int64_t r, int64_t c, int steps, cudaStream_t s) {
  const int64_t n = r * c, Kc = pad32(c), Kr = pad32(r);
  {
    DeviceBuffer partial(NORM_BLOCKS * sizeof(double), s), inv(4, s);
    SPX_LAUNCH(NORM_BLOCKS, 256, 0, s, sumsq_f64_partial_kernel)(X, n, partial.as<double>());
    CUDA_CHECK_LAUNCH();
    SPX_LAUNCH(1, 256, 0, s, inv_norm_kernel)(partial.as<double>(), NORM_BLOCKS, inv.as<float>());
    CUDA_CHECK_LAUNCH();
    SPX_LAUNCH(grid_for(n), 256, 0, s, scale_kernel)(X, n, inv.as<float>());
    CUDA_CHECK_LAUNCH();
  }
  if (steps <= 0) return;
  const float qa = 3.4445f, qb = -4.7750f, qc = 2.0315f;
  // One bf16 buffer serves as X [r, Kc] (left and right operand of X·Xᵀ) and later as Xᵀ [c, Kr]
  // (right operand of B·X); the stream orders the reuse.
  DeviceBuffer Xh(size_t(std::max(r * Kc, c * Kr)) * sizeof(bf16), s);
  DeviceBuffer Ah(size_t(r * Kr) * sizeof(bf16), s), AhT(size_t(r * Kr) * sizeof(bf16), s);
  DeviceBuffer A(size_t(r * r) * 4, s), AA(size_t(r * r) * 4, s), T(size_t(n) * 4, s);
  for (int it = 0; it < steps; ++it) {
    // A = X·Xᵀ  (gemm: C[M,N] = A[M,K]·B[N,K]ᵀ, both operands X)
    convert_pad<bf16>(X, DType::F32, r, c, nullptr, DType::F32, Xh.as<bf16>(), Kc, s);
    gemm_bf16_dev(Xh.get(), Xh.get(), nullptr, A.as<float>(), r, r, Kc, s);
    // AA = A·A  (right operand Aᵀ, as rows)
    convert_pad<bf16>(A.as<float>(), DType::F32, r, r, nullptr, DType::F32, Ah.as<bf16>(), Kr, s);
    transpose_convert<bf16>(A.as<float>(), DType::F32, r, r, AhT.as<bf16>(), Kr, s);
    gemm_bf16_dev(Ah.get(), AhT.get(), nullptr, AA.as<float>(), r, r, Kr, s);
    // B = b·A + c·AA  (into A)
    axpby(A.as<float>(), AA.as<float>(), r * r, qb, qc, A.as<float>(), s);
    // T = B·X  (right operand Xᵀ [c, Kr])
    convert_pad<bf16>(A.as<float>(), DType::F32, r, r, nullptr, DType::F32, Ah.as<bf16>(), Kr, s);
    transpose_convert<bf16>(X, DType::F32, r, c, Xh.as<bf16>(), Kr, s);
    gemm_bf16_dev(Ah.get(), Xh.get(), nullptr, T.as<float>(), r, c, Kr, s);
    // X = a·X + T
    axpby(X, T.as<float>(), n, qa, 1.f, X, s);
  }
}

// p[i] += α·O[i]
__global__ void muon_update_kernel(float* __restrict__ p, const float* __restrict__ O, int64_t n, float alpha) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    p[i] = __fadd_rn(p[i], __fmul_rn(alpha, O[i]));
}
}  // namespace

void muon_dev(float* p, float* g, float* buf, int64_t rows, int64_t cols, double lr, double momentum, bool nesterov,
              double weight_decay, int ns_steps, cudaStream_t s) {
  const int64_t n = rows * cols;
  if (n == 0) return;
  // Scalars as the CPU computes them (double, rounded once to f32).
  SPX_LAUNCH(grid_for(n), 256, 0, s, muon_pre_kernel)(p, g, buf, n, weight_decay > 0, float(1.0 - lr * weight_decay),
                                              momentum > 0, float(1.0 - momentum), float(momentum), nesterov);
  CUDA_CHECK_LAUNCH();
  // Orthogonalise on the smaller side: X = g [rows, cols] when rows <= cols, else gᵀ.
  const bool tr = rows > cols;
  const int64_t r = tr ? cols : rows, c = tr ? rows : cols;
  DeviceBuffer X(size_t(n) * 4, s);
  if (tr)
    transpose_f32(g, rows, cols, X.as<float>(), s);
  else
    CUDA_CHECK(cudaMemcpyAsync(X.get(), g, size_t(n) * 4, cudaMemcpyDeviceToDevice, s));
  newton_schulz_dev(X.as<float>(), r, c, ns_steps, s);
  const float* O = X.as<float>();
  DeviceBuffer back;
  if (tr) {  // back to [rows, cols]
    back = DeviceBuffer(size_t(n) * 4, s);
    transpose_f32(X.as<float>(), r, c, back.as<float>(), s);
    O = back.as<float>();
  }
  const float alpha = float(-lr * 0.2 * std::sqrt(double(std::max(rows, cols))));
  SPX_LAUNCH(grid_for(n), 256, 0, s, muon_update_kernel)(p, O, n, alpha);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace sparsify
