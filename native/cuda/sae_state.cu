// A sparse coder's training state on the device, so a training step moves only the batch in and
// the losses + selected indices out (sparsify/sparse_coder.py, trainer.py, sign_sgd.py):
//   forward_backward(x, y?, dead_mask?):
//     W_dec rows renormalised first (normalize_decoder and not transcode, "every forward")
//     x_in = x − b_dec (SAE) | x (transcoder);  y = x (SAE) | y (transcoder)
//     acts, idx = TopK/GroupMax(relu(x_in·W_encᵀ + b_enc))   (fused encoder, bf16/f16 GEMM)
//     sae_out = Σ acts·W_dec[idx] + b_dec (+ x·W_skipᵀ with skip_connection: the raw x, not x − b_dec);
//     e = y − sae_out
//     tv = Σ (y − mean_n y)²;  fvu = Σ e² / tv
//     AuxK (dead latents): k_aux = d/2, scale = min(num_dead / k_aux, 1), k_aux = min(k_aux, num_dead)
//       e_hat = decode(aux) (+ b_dec at sparsify HEAD, option); auxk = scale·Σ (e_hat − e)² / tv
//     Multi-TopK (call.multi_topk): a TopK selection of 4k latents from the same pre-activations (TopK:
//       one encoder pass, top-k = its head; GroupMax: a second pass), out4 = decode(4k) + b_dec (no W_skip),
//       multi_topk_fvu = Σ (out4 − y)² / tv
//     loss = fvu + auxk_alpha·auxk + multi_topk_fvu/8; gradients of loss·loss_scale are ADDED to the accumulators:
//       dL/dsae_out = −2e/tv; decoder: grad_acts, W_dec (CSR), b_dec (column sum);
//       W_skip: Gᵀ·x (f32, see gemm_f32_acc below);
//       encoder (FusedEncoder.backward, no ReLU mask): W_enc, b_enc (CSR), and b_dec −= Σ grad_x_in (SAE);
//       AuxK trains only W_dec (and b_dec through its + b_dec), never the encoder (sparsify's AuxK quirk);
//       Multi-TopK likewise trains only W_dec and b_dec: its selection comes from the fused encoder's
//       pre-activations output, which gets no gradient (as the CPU saeStep).
//   apply(optimizer): W_dec gradient projection (normalize_decoder and not transcode), optional
//     global gradient-norm clipping (max_grad_norm, grad_clip.cu), Adam or
//     schedule-free signum on the four (five with W_skip) parameters, or muon (Muon on the 2-D
//     parameters with the momentum buffer in m[], muon.cu; Adam on b_enc / b_dec), gradients
//     zeroed; W_skip is neither renormalised nor projected.
// Also: forward-only calls (SparseCoder.forward), encode/decode with the resident parameters,
// optimizer state in/out (checkpoints), the schedule-free eval/train lerp, and sparsify's
// dead-latent counters (num_tokens_since_fired, float64) updated from the tracked selections.
// CPU twin: native/cpu/sae_state.cpp (the same state over the CPU kernels); float64 references:
// native/ref/sae_reference.cpp, optim_reference.cpp.
// NOTE: never run on a GPU (written and compiled without one); tests: test/cuda/coder.test.ts.
#include <cstring>
#include <limits>
#include <cmath>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/convert.cuh"
#include "cuda/device_ops.h"
#include "cuda/cuda_ops.h"

namespace sparsify {
namespace cuda {

namespace {
// Persistent (not stream-ordered) device array; freed with cudaFree, which waits for users.
struct DevArray {
  float* p = nullptr;
  int64_t n = 0;
  DevArray() = default;
  DevArray(const DevArray&) = delete;
  DevArray& operator=(const DevArray&) = delete;
  ~DevArray() { reset(); }
  void reset() {
    if (p) cudaFree(p);
    p = nullptr;
    n = 0;
  }
  void alloc(int64_t count) {
    n = count;
    CUDA_CHECK(cudaMalloc(&p, size_t(std::max<int64_t>(count, 1)) * 4));
  }
};

constexpr int RED_BLOCKS = 256;  // fixed grid: deterministic two-stage reductions

// to_f32[n,d] = load(x) − (sub ? sub[d] : 0)
__global__ void rows_minus_kernel(const void* __restrict__ x, DType xdt, const float* __restrict__ sub, int64_t N,
                                  int64_t D, float* __restrict__ out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < N * D; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = load_f32(x, xdt, i) - (sub ? sub[i % D] : 0.f);
}

// out[i] = a[i] − b[i]
__global__ void sub_kernel(const float* __restrict__ a, const float* __restrict__ b, int64_t n, float* __restrict__ out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = a[i] - b[i];
}

// partial[block] = Σ over this block's fixed share of (a[i] − (mean ? mean[i % D] : 0))²
__global__ void sumsq_partial_kernel(const float* __restrict__ a, const float* __restrict__ mean, int64_t n, int64_t D,
                                     float* __restrict__ partial) {
  __shared__ float scratch[32];
  float acc = 0.f;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float v = a[i] - (mean ? mean[i % D] : 0.f);
    acc = fmaf(v, v, acc);
  }
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void sum_partials_kernel(const float* __restrict__ partial, int n, float* __restrict__ out) {
  __shared__ float scratch[32];
  float acc = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) *out = acc;
}

// out[i] = (coef / *den) · a[i]
__global__ void scale_by_kernel(const float* __restrict__ a, int64_t n, float coef, const float* __restrict__ den,
                                float* __restrict__ out) {
  const float f = coef / *den;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = f * a[i];
}

unsigned grid_for(int64_t n) { return unsigned(std::max<int64_t>(1, std::min<int64_t>((n + 255) / 256, 65535LL * 4))); }

// *out = Σ (a − mean)²  (mean optional, per column of D)
void sum_squares(const float* a, const float* mean, int64_t n, int64_t D, float* partial, float* out, cudaStream_t s) {
  SPX_LAUNCH(RED_BLOCKS, 256, 0, s, sumsq_partial_kernel)(a, mean, n, D, partial);
  CUDA_CHECK_LAUNCH();
  SPX_LAUNCH(1, 256, 0, s, sum_partials_kernel)(partial, RED_BLOCKS, out);
  CUDA_CHECK_LAUNCH();
}

// C[i, j] += Σ_r A[i·a_i + r·a_r] · B[j·b_j + r·b_r]  (f32; each output summed by one thread in a
// fixed order: deterministic). W_skip's two products use it: the forward x·W_skipᵀ and the
// gradient Gᵀ·x. Why f32 and not the bf16 tensor-core GEMM: the CPU reference (and the float64
// one) compute these in f32, so cuda-vs-cpu tests stay tight; sparsify under bf16 autocast would
// round both operands to bf16. A plain 32×32 shared-memory tiling (simple, not tuned), a cost of
// O(N·D²) per step next to the encoder's O(N·D·M). Tiles are As[i][r], Bs[j][r]; each operand is
// loaded with the warp along its contiguous index (r for x·W_skipᵀ, i / j for Gᵀ·x) so global
// reads coalesce either way (the choice is uniform per launch).
constexpr int SG_T = 32, SG_ROWS = 8;  // tile edge; block = 32 × 8 threads, 4 outputs per thread
__global__ void gemm_f32_acc_kernel(const float* __restrict__ A, int64_t a_i, int64_t a_r, const float* __restrict__ B,
                                    int64_t b_j, int64_t b_r, float* __restrict__ C, int64_t ldc, int64_t I, int64_t J,
                                    int64_t R) {
  __shared__ float As[SG_T][SG_T + 1], Bs[SG_T][SG_T + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t i0 = int64_t(blockIdx.x) * SG_T, j0 = int64_t(blockIdx.y) * SG_T;
  float acc[SG_T / SG_ROWS] = {};
  for (int64_t r0 = 0; r0 < R; r0 += SG_T) {
    for (int q = ty; q < SG_T; q += SG_ROWS) {
      if (a_i == 1) {  // contiguous along i: lanes walk i
        const int64_t i = i0 + tx, r = r0 + q;
        As[tx][q] = (i < I && r < R) ? A[i + r * a_r] : 0.f;
      } else {  // lanes walk r
        const int64_t i = i0 + q, r = r0 + tx;
        As[q][tx] = (i < I && r < R) ? A[i * a_i + r * a_r] : 0.f;
      }
      if (b_j == 1) {
        const int64_t j = j0 + tx, r = r0 + q;
        Bs[tx][q] = (j < J && r < R) ? B[j + r * b_r] : 0.f;
      } else {
        const int64_t j = j0 + q, r = r0 + tx;
        Bs[q][tx] = (j < J && r < R) ? B[j * b_j + r * b_r] : 0.f;
      }
    }
    __syncthreads();
    for (int rr = 0; rr < SG_T; ++rr) {
      const float b = Bs[tx][rr];
#pragma unroll
      for (int u = 0; u < SG_T / SG_ROWS; ++u) acc[u] = fmaf(As[ty + SG_ROWS * u][rr], b, acc[u]);
    }
    __syncthreads();
  }
  const int64_t j = j0 + tx;
#pragma unroll
  for (int u = 0; u < SG_T / SG_ROWS; ++u) {
    const int64_t i = i0 + ty + SG_ROWS * u;
    if (i < I && j < J) C[i * ldc + j] += acc[u];
  }
}

void gemm_f32_acc(const float* A, int64_t a_i, int64_t a_r, const float* B, int64_t b_j, int64_t b_r, float* C,
                  int64_t ldc, int64_t I, int64_t J, int64_t R, cudaStream_t s) {
  if (I == 0 || J == 0 || R == 0) return;
  // i on grid x (up to 2^31 − 1 blocks: N rows), j on grid y (J = D <= 65535·32).
  const dim3 grid(unsigned((I + SG_T - 1) / SG_T), unsigned((J + SG_T - 1) / SG_T));
  SPX_LAUNCH(grid, dim3(SG_T, SG_ROWS), 0, s, gemm_f32_acc_kernel)(A, a_i, a_r, B, b_j, b_r, C, ldc, I, J, R);
  CUDA_CHECK_LAUNCH();
}
}  // namespace

struct ResidentSae {
  SaeConfig cfg;
  int64_t M = 0, D = 0;
  DevArray w_enc, b_enc, w_dec, b_dec, w_skip, log_t;            // parameters (signum: these hold y); w_skip: cfg.skip; log_t: cfg.log_threshold
  DevArray g_w_enc, g_b_enc, g_w_dec, g_b_dec, g_w_skip, g_log_t;  // gradient accumulators
  DevArray m[kSaeMaxParams], v[kSaeMaxParams], z[kSaeMaxParams];  // Adam moments (muon: m = 2-D momentum) / schedule-free z, on first use
  // int32 [M + 1]: 1 for the latents selected by tracked steps since the last sae_take_fired
  // (the dead-latent bookkeeping stays here); entry M flags an out-of-range index (a kernel bug).
  DevArray fired;
  // num_tokens_since_fired, float64 [M] (stored in 2M floats); the dead mask derived from it at the
  // last update (host int32 [M], read by the encoder's AuxK bookkeeping) and its count.
  DevArray since_fired;
  double dead_threshold = std::numeric_limits<double>::infinity();
  Tensor dead_host;
  int64_t num_dead = 0;
  // Slots 0..num_params()-1; has(i) says which of them exist (W_skip, log_threshold optional).
  int num_params() const { return cfg.log_threshold ? 6 : cfg.skip ? 5 : 4; }
  bool has(int i) const { return i < 4 || (i == 4 && cfg.skip) || (i == 5 && cfg.log_threshold); }
  DevArray& param(int i) { return i == 0 ? w_enc : i == 1 ? b_enc : i == 2 ? w_dec : i == 3 ? b_dec : i == 4 ? w_skip : log_t; }
  DevArray& grad(int i) { return i == 0 ? g_w_enc : i == 1 ? g_b_enc : i == 2 ? g_w_dec : i == 3 ? g_b_dec : i == 4 ? g_w_skip : g_log_t; }
  std::vector<int64_t> shape(int i) const {
    if (i == 1 || i == 5) return {M};
    if (i == 3) return {D};
    return i == 4 ? std::vector<int64_t>{D, D} : std::vector<int64_t>{M, D};
  }
};

int64_t sae_num_latents(const ResidentSae& sae) { return sae.M; }
int64_t sae_d_in(const ResidentSae& sae) { return sae.D; }
int64_t sae_k(const ResidentSae& sae) { return sae.cfg.k; }
int sae_num_params(const ResidentSae& sae) { return sae.num_params(); }
bool sae_has_param(const ResidentSae& sae, int i) { return sae.has(i); }

SaeViews sae_views(const std::shared_ptr<ResidentSae>& sae) {
  // Non-owning device storage; the release keeps the state alive while a view lives.
  auto view = [&](void* p, std::vector<int64_t> shape, DType dt) {
    auto st = std::make_shared<Storage>();
    st->data = p;
    st->device = Device::CUDA;
    int64_t n = 1;
    for (int64_t v : shape) n *= v;
    st->bytes = size_t(n) * dtype_size(dt);
    std::shared_ptr<ResidentSae> keep = sae;
    st->release = [keep](void*, size_t) {};
    Tensor t;
    t.storage = std::move(st);
    t.shape = std::move(shape);
    t.dtype = dt;
    return t;
  };
  SaeViews v;
  for (int i = 0; i < sae->num_params(); ++i) {
    if (!sae->has(i)) continue;
    v.params[i] = view(sae->param(i).p, sae->shape(i), DType::F32);
    v.grads[i] = view(sae->grad(i).p, sae->shape(i), DType::F32);
  }
  v.fired = view(sae->fired.p, {sae->M}, DType::I32);
  return v;
}

std::shared_ptr<ResidentSae> make_resident_sae(const Tensor& w_enc, const Tensor& b_enc, const Tensor& w_dec,
                                               const Tensor& b_dec, const Tensor& w_skip, const SaeConfig& cfg,
                                               const Tensor& log_threshold) {
  auto r = std::make_shared<ResidentSae>();
  r->cfg = cfg;
  r->cfg.skip = w_skip.defined();
  r->cfg.log_threshold = log_threshold.defined();
  r->M = w_enc.dim(0);
  r->D = w_enc.dim(1);
  Session ses;
  cudaStream_t s = ses.stream();
  const Tensor* src[kSaeMaxParams] = {&w_enc, &b_enc, &w_dec, &b_dec, &w_skip, &log_threshold};
  for (int i = 0; i < r->num_params(); ++i) {
    if (!r->has(i)) continue;
    Tensor f = src[i]->to(DType::F32);
    r->param(i).alloc(f.numel());
    r->grad(i).alloc(f.numel());
    if (f.numel()) {
      CUDA_CHECK(cudaMemcpyAsync(r->param(i).p, f.raw(), f.nbytes(), cudaMemcpyDefault, s));
      CUDA_CHECK(cudaMemsetAsync(r->grad(i).p, 0, f.nbytes(), s));
    }
    ses.sync();  // `f` dies at the end of this iteration
  }
  r->fired.alloc(r->M + 1);
  CUDA_CHECK(cudaMemsetAsync(r->fired.p, 0, size_t(r->M + 1) * 4, s));
  r->since_fired.alloc(2 * r->M);
  CUDA_CHECK(cudaMemsetAsync(r->since_fired.p, 0, size_t(r->M) * 8, s));
  r->dead_host = Tensor::zeros({r->M}, DType::I32);
  ses.sync();
  return r;
}

namespace {
// Encoder operands of one batch: x as f32, x_in = x − b_dec (SAE) or x (transcoder), and the
// GEMM operands X = x_in, W = W_enc rounded to the compute dtype and zero-padded to pad32(D).
struct EncoderInputs {
  DeviceBuffer xf, xin_buf, Xc, Wc;
  const float* xin = nullptr;
};

EncoderInputs encoder_inputs(ResidentSae& sae, const Tensor& x, int64_t N, cudaStream_t s) {
  const int64_t D = sae.D, M = sae.M, Kp = pad32(D), ND = N * D;
  const bool sae_mode = !sae.cfg.transcode;
  EncoderInputs in;
  DeviceTensor dx = upload(x, s);
  in.xf = DeviceBuffer(size_t(ND) * 4, s);
  SPX_LAUNCH(grid_for(ND), 256, 0, s, rows_minus_kernel)(dx.data(), x.dtype, nullptr, N, D, in.xf.as<float>());
  CUDA_CHECK_LAUNCH();
  in.xin = in.xf.as<float>();
  if (sae_mode) {
    in.xin_buf = DeviceBuffer(size_t(ND) * 4, s);
    SPX_LAUNCH(grid_for(ND), 256, 0, s, rows_minus_kernel)(in.xf.get(), DType::F32, sae.b_dec.p, N, D, in.xin_buf.as<float>());
    CUDA_CHECK_LAUNCH();
    in.xin = in.xin_buf.as<float>();
  }
  const size_t esz = 2;  // bf16/f16
  in.Xc = DeviceBuffer(size_t(N * Kp) * esz, s);
  in.Wc = DeviceBuffer(size_t(M * Kp) * esz, s);
  if (sae.cfg.compute == DType::F16) {
    convert_pad<__half>(in.xin, DType::F32, N, D, nullptr, DType::F32, in.Xc.as<__half>(), Kp, s);
    convert_pad<__half>(sae.w_enc.p, DType::F32, M, D, nullptr, DType::F32, in.Wc.as<__half>(), Kp, s);
  } else {
    convert_pad<__nv_bfloat16>(in.xin, DType::F32, N, D, nullptr, DType::F32, in.Xc.as<__nv_bfloat16>(), Kp, s);
    convert_pad<__nv_bfloat16>(sae.w_enc.p, DType::F32, M, D, nullptr, DType::F32, in.Wc.as<__nv_bfloat16>(), Kp, s);
  }
  return in;  // dx's buffer is stream-ordered: freed after the kernels that read it
}

__global__ void set_scalar_kernel(float* out, float v) { *out = v; }
__global__ void scale_scalar_kernel(float* p, float f) { *p *= f; }

// fired[idx[i]] = 1 (CPU twin: saeStep's didFire in native/cpu/sae_backward.cpp); an index
// outside [0, M) sets the flag fired[M] instead of writing out of bounds.
__global__ void mark_fired_kernel(const int* __restrict__ idx, int64_t n, int64_t M, int* __restrict__ fired) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int m = idx[i];
    fired[m >= 0 && m < M ? m : M] = 1;
  }
}

// (vo, io)[n, j] = (v, i)[n, j] for j < kout: the first kout columns of [N, kin] selections.
__global__ void head_cols_kernel(const float* __restrict__ v, const int* __restrict__ i, int64_t N, int64_t kin,
                                 int64_t kout, float* __restrict__ vo, int* __restrict__ io) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < N * kout; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = t / kout, j = t % kout;
    vo[t] = v[n * kin + j];
    io[t] = i[n * kin + j];
  }
}

// *out = Σ (y − mean_n y)² of y [N, D] (host or device, any float dtype), on stream s.
void total_variance_on_device(const Tensor& y, float* out, cudaStream_t s) {
  const int64_t N = y.dim(0), D = y.dim(1), ND = N * D;
  DeviceTensor dy = upload(y, s);
  DeviceBuffer yf(size_t(std::max<int64_t>(ND, 1)) * 4, s), mean(size_t(std::max<int64_t>(D, 1)) * 4, s);
  DeviceBuffer partial(RED_BLOCKS * 4, s);
  SPX_LAUNCH(grid_for(ND), 256, 0, s, rows_minus_kernel)(dy.data(), y.dtype, nullptr, N, D, yf.as<float>());
  CUDA_CHECK_LAUNCH();
  column_sum(yf.as<float>(), N, D, N ? 1.f / float(N) : 0.f, mean.as<float>(), false, s);
  sum_squares(yf.as<float>(), mean.as<float>(), ND, D, partial.as<float>(), out, s);
  // A host y's staging copy must outlive the async upload: wait for this stream's work on it.
  if (y.device() == Device::CPU) CUDA_CHECK(cudaStreamSynchronize(s));
}

// did_fire[idx] = 1 for the selected latents (host; indices are checked: a kernel bug must not
// become a host out-of-bounds write).
void mark_fired(const Tensor& indices, const Tensor& did_fire) {
  if (!did_fire.defined()) return;
  if (did_fire.device() != Device::CPU) throw NativeError(ErrorKind::Device, "didFire must be a host tensor");
  const int32_t* idx = indices.data<int32_t>();
  int32_t* f = did_fire.data<int32_t>();
  const int64_t M = did_fire.numel();
  for (int64_t i = 0, n = indices.numel(); i < n; ++i) {
    const int32_t m = idx[i];
    if (m < 0 || m >= M) throw NativeError(ErrorKind::Internal, "CUDA encoder returned latent index " + std::to_string(m) + " outside [0, " + std::to_string(M) + ")");
    f[m] = 1;
  }
}
}  // namespace

double total_variance(const Tensor& y) {
  Session ses;
  cudaStream_t s = ses.stream();
  DeviceBuffer out(4, s);
  total_variance_on_device(y, out.as<float>(), s);
  float v = 0;
  CUDA_CHECK(cudaMemcpyAsync(&v, out.get(), 4, cudaMemcpyDeviceToHost, s));
  ses.sync();
  return double(v);
}

SaeStepResult sae_forward_backward(ResidentSae& sae, const Tensor& x, const Tensor& y, const Tensor& dead_mask,
                                   const SaeCall& call, const Tensor& did_fire) {
  const int64_t N = x.dim(0), D = sae.D, M = sae.M, ND = N * D;
  const int64_t k = call.k;
  const bool sae_mode = !sae.cfg.transcode;
  const double auxk_alpha = call.auxk_alpha, loss_scale = call.loss_scale;
  Session ses;
  cudaStream_t s = ses.stream();
  // As the CPU forwardBackward: renormalise before a training forward only (forward() does not).
  if (call.backward && sae_mode && call.normalize_decoder) normalize_rows_dev(sae.w_dec.p, M, D, 1.1920928955078125e-07f, s);

  EncoderInputs in = encoder_inputs(sae, x, N, s);
  const float* xin = in.xin;
  DeviceTensor dy;
  DeviceBuffer yf_buf;
  const float* yf = in.xf.as<float>();
  if (y.defined()) {
    dy = upload(y, s);
    yf_buf = DeviceBuffer(size_t(ND) * 4, s);
    SPX_LAUNCH(grid_for(ND), 256, 0, s, rows_minus_kernel)(dy.data(), y.dtype, nullptr, N, D, yf_buf.as<float>());
    CUDA_CHECK_LAUNCH();
    yf = yf_buf.as<float>();
  }

  // Encode (+ AuxK selection in the same pass).
  EncodeOptions o;
  o.k = k;
  o.groupmax = call.groupmax;
  o.compute = sae.cfg.compute;
  int64_t num_dead = 0;
  Tensor dead = dead_mask;
  if (call.dead_from_counters) {
    // The state's mask, read back once per counter update: no copy per step.
    dead = sae.dead_host;
    num_dead = sae.num_dead;
  } else if (dead_mask.defined()) {
    const Tensor dm_host = host_copy(dead_mask);  // small [M]; may come from the device
    const int32_t* dm = dm_host.data<int32_t>();
    for (int64_t m = 0; m < M; ++m) num_dead += dm[m] != 0;
  }
  const int64_t k_aux_nominal = D / 2;
  if (num_dead > 0 && k_aux_nominal > 0) {
    o.dead_mask = dead;
    o.k_aux = k_aux_nominal;
  }
  // Multi-TopK: the 4k selection, plain TopK whatever the activation (as the CPU encoder; the
  // chunked fallback when 4k's candidate lists do not fit the fused kernel). With TopK one pass
  // serves both: the encoder's rows are sorted by (value desc, index asc), so the first k of the
  // 4k are exactly the top-k (the CPU encoder takes its top-k as the head of the 4k too); the AuxK
  // selection rides on that pass. GroupMax needs its own pass for the main selection.
  const int64_t k4 = call.multi_topk ? 4 * k : 0;
  DeviceEncodeOut enc, enc4;  // enc4 also holds the AuxK maps' host sources until the sync below
  if (k4 && !call.groupmax) {
    o.k = k4;
    enc4 = encode_on_device(ses, sae.cfg.compute, in.Xc.get(), in.Wc.get(), sae.b_enc.p, N, D, M, o);
    enc.vals = DeviceBuffer(size_t(N * k) * 4, s);
    enc.idx = DeviceBuffer(size_t(N * k) * 4, s);
    SPX_LAUNCH(grid_for(N * k), 256, 0, s, head_cols_kernel)(enc4.vals.as<float>(), enc4.idx.as<int>(), N, k4, k,
                                                      enc.vals.as<float>(), enc.idx.as<int>());
    CUDA_CHECK_LAUNCH();
    enc.k_aux = enc4.k_aux;
    enc.aux_v = std::move(enc4.aux_v);
    enc.aux_i = std::move(enc4.aux_i);
  } else {
    enc = encode_on_device(ses, sae.cfg.compute, in.Xc.get(), in.Wc.get(), sae.b_enc.p, N, D, M, o);
    if (k4) {
      EncodeOptions o4;
      o4.k = k4;
      o4.compute = sae.cfg.compute;
      enc4 = encode_on_device(ses, sae.cfg.compute, in.Xc.get(), in.Wc.get(), sae.b_enc.p, N, D, M, o4);
    }
  }

  // Decode, residual, losses.
  DeviceBuffer out(size_t(ND) * 4, s), e(size_t(ND) * 4, s);
  DeviceBuffer mean(size_t(D) * 4, s), partial(RED_BLOCKS * 4, s), scalars(4 * 4, s);
  float* sc = scalars.as<float>();  // [0] tv, [1] Σe², [2] Σ(e_hat − e)², [3] Σ(out4 − y)²
  CUDA_CHECK(cudaMemsetAsync(sc, 0, 16, s));
  embedding_bag(enc.vals.as<float>(), enc.idx.as<int>(), N, int(k), sae.w_dec.p, DType::F32, D, sae.b_dec.p,
                DType::F32, out.as<float>(), s);
  // W_skip: sae_out[n, d] += Σ_e x[n, e] W_skip[d, e]  (the raw input x, also for SAEs)
  if (sae.cfg.skip) gemm_f32_acc(in.xf.as<float>(), D, 1, sae.w_skip.p, D, 1, out.as<float>(), D, N, D, D, s);
  SPX_LAUNCH(grid_for(ND), 256, 0, s, sub_kernel)(yf, out.as<float>(), ND, e.as<float>());
  CUDA_CHECK_LAUNCH();
  if (call.total_variance > 0) {
    SPX_LAUNCH(1, 1, 0, s, set_scalar_kernel)(sc + 0, float(call.total_variance));
    CUDA_CHECK_LAUNCH();
  } else if (call.variance_of.defined()) {
    total_variance_on_device(call.variance_of, sc + 0, s);
    SPX_LAUNCH(1, 1, 0, s, scale_scalar_kernel)(sc + 0, float(call.variance_fraction));
    CUDA_CHECK_LAUNCH();
  } else {
    column_sum(yf, N, D, N ? 1.f / float(N) : 0.f, mean.as<float>(), false, s);
    sum_squares(yf, mean.as<float>(), ND, D, partial.as<float>(), sc + 0, s);
  }
  sum_squares(e.as<float>(), nullptr, ND, D, partial.as<float>(), sc + 1, s);
  DeviceBuffer out4, r4;
  if (k4) {
    out4 = DeviceBuffer(size_t(ND) * 4, s);
    r4 = DeviceBuffer(size_t(ND) * 4, s);
    embedding_bag(enc4.vals.as<float>(), enc4.idx.as<int>(), N, int(k4), sae.w_dec.p, DType::F32, D, sae.b_dec.p,
                  DType::F32, out4.as<float>(), s);
    SPX_LAUNCH(grid_for(ND), 256, 0, s, sub_kernel)(out4.as<float>(), yf, ND, r4.as<float>());  // out4 − y
    CUDA_CHECK_LAUNCH();
    sum_squares(r4.as<float>(), nullptr, ND, D, partial.as<float>(), sc + 3, s);
  }

  const int64_t NK = N * k;
  if (call.backward) {
    // d(loss·loss_scale)/d sae_out = −2·loss_scale·e / tv
    DeviceBuffer G(size_t(ND) * 4, s);
    SPX_LAUNCH(grid_for(ND), 256, 0, s, scale_by_kernel)(e.as<float>(), ND, float(-2.0 * loss_scale), sc + 0, G.as<float>());
    CUDA_CHECK_LAUNCH();
    DeviceBuffer grad_acts(size_t(std::max<int64_t>(NK, 1)) * 4, s);
    slot_dot(G.as<float>(), enc.idx.as<int>(), NK, int(k), sae.w_dec.p, DType::F32, D, grad_acts.as<float>(), s);
    Csr csr = build_csr(enc.idx.as<int>(), NK, M, s);
    csr_rows(csr, enc.vals.as<float>(), int(k), G.as<float>(), M, D, sae.g_w_dec.p, nullptr, true, s);
    column_sum(G.as<float>(), N, D, 1.f, sae.g_b_dec.p, true, s);
    // W_skip: g[d, e] += Σ_n G[n, d] x[n, e]
    if (sae.cfg.skip) gemm_f32_acc(G.as<float>(), 1, D, in.xf.as<float>(), 1, D, sae.g_w_skip.p, D, D, D, N, s);
    // Encoder (FusedEncoder.backward): W_enc, b_enc from the same CSR; b_dec through x − b_dec.
    csr_rows(csr, grad_acts.as<float>(), int(k), xin, M, D, sae.g_w_enc.p, sae.g_b_enc.p, true, s);
    if (sae_mode) {
      DeviceBuffer gx(size_t(ND) * 4, s);
      embedding_bag(grad_acts.as<float>(), enc.idx.as<int>(), N, int(k), sae.w_enc.p, DType::F32, D, nullptr,
                    DType::F32, gx.as<float>(), s);
      column_sum(gx.as<float>(), N, D, -1.f, sae.g_b_dec.p, true, s);
    }
    // Multi-TopK (loss/8): d/d out4 = 2·loss_scale·(out4 − y) / (8·tv), into W_dec and b_dec only.
    if (k4) {
      DeviceBuffer Gm(size_t(ND) * 4, s);
      SPX_LAUNCH(grid_for(ND), 256, 0, s, scale_by_kernel)(r4.as<float>(), ND, float(2.0 * loss_scale / 8.0), sc + 0,
                                                   Gm.as<float>());
      CUDA_CHECK_LAUNCH();
      Csr csr4 = build_csr(enc4.idx.as<int>(), N * k4, M, s);
      csr_rows(csr4, enc4.vals.as<float>(), int(k4), Gm.as<float>(), M, D, sae.g_w_dec.p, nullptr, true, s);
      column_sum(Gm.as<float>(), N, D, 1.f, sae.g_b_dec.p, true, s);
    }
  }

  // AuxK: trains W_dec (and b_dec when e_hat includes it) toward the residual.
  double scale = 0;
  if (enc.k_aux > 0) {
    const int ka = enc.k_aux;
    scale = std::min(double(num_dead) / double(k_aux_nominal), 1.0);
    DeviceBuffer ehat(size_t(ND) * 4, s), r(size_t(ND) * 4, s);
    embedding_bag(enc.aux_v.as<float>(), enc.aux_i.as<int>(), N, ka, sae.w_dec.p, DType::F32, D,
                  call.auxk_includes_b_dec ? sae.b_dec.p : nullptr, DType::F32, ehat.as<float>(), s);
    SPX_LAUNCH(grid_for(ND), 256, 0, s, sub_kernel)(ehat.as<float>(), e.as<float>(), ND, r.as<float>());
    CUDA_CHECK_LAUNCH();
    sum_squares(r.as<float>(), nullptr, ND, D, partial.as<float>(), sc + 2, s);
    if (call.backward && auxk_alpha > 0) {
      DeviceBuffer Ga(size_t(ND) * 4, s);
      SPX_LAUNCH(grid_for(ND), 256, 0, s, scale_by_kernel)(r.as<float>(), ND, float(2.0 * scale * auxk_alpha * loss_scale),
                                                   sc + 0, Ga.as<float>());
      CUDA_CHECK_LAUNCH();
      Csr acsr = build_csr(enc.aux_i.as<int>(), N * ka, M, s);
      csr_rows(acsr, enc.aux_v.as<float>(), ka, Ga.as<float>(), M, D, sae.g_w_dec.p, nullptr, true, s);
      if (call.auxk_includes_b_dec) column_sum(Ga.as<float>(), N, D, 1.f, sae.g_b_dec.p, true, s);
    }
  }

  float host_sc[4] = {0, 0, 0, 0};
  CUDA_CHECK(cudaMemcpyAsync(host_sc, sc, 16, cudaMemcpyDeviceToHost, s));
  SaeStepResult res;
  // With Multi-TopK the CPU saeStep returns (and marks as fired) the 4k selection and its decode.
  const DeviceEncodeOut& ret = k4 ? enc4 : enc;
  const int64_t kr = k4 ? k4 : k;
  if (call.track_fired) {
    SPX_LAUNCH(grid_for(N * kr), 256, 0, s, mark_fired_kernel)(static_cast<const int*>(ret.idx.get()), N * kr, M, reinterpret_cast<int*>(sae.fired.p));
    CUDA_CHECK_LAUNCH();
  }
  // The indices leave the device only when the caller reads them.
  if (call.outputs || did_fire.defined()) res.indices = download(ret.idx.get(), {N, kr}, DType::I32, s);
  if (call.outputs) {
    res.acts = download(ret.vals.get(), {N, kr}, DType::F32, s);
    res.sae_out = download(k4 ? out4.get() : out.get(), {N, D}, DType::F32, s);
  }
  res.k_aux = enc.k_aux;
  res.num_dead = num_dead;
  ses.sync();
  res.total_variance = double(host_sc[0]);
  res.fvu = double(host_sc[1]) / double(host_sc[0]);
  res.auxk_loss = enc.k_aux > 0 ? scale * double(host_sc[2]) / double(host_sc[0]) : 0.0;
  res.multi_topk_fvu = k4 ? double(host_sc[3]) / double(host_sc[0]) : 0.0;
  if (did_fire.defined()) mark_fired(res.indices, did_fire);
  return res;
}

Tensor sae_take_fired(ResidentSae& sae) {
  Session ses;
  cudaStream_t s = ses.stream();
  Tensor all = download(sae.fired.p, {sae.M + 1}, DType::I32, s);
  CUDA_CHECK(cudaMemsetAsync(sae.fired.p, 0, size_t(sae.M + 1) * 4, s));
  ses.sync();
  if (all.data<int32_t>()[sae.M]) throw NativeError(ErrorKind::Internal, "CUDA encoder selected a latent index outside [0, num_latents)");
  Tensor out = Tensor::empty({sae.M}, DType::I32);
  std::memcpy(out.raw(), all.raw(), size_t(sae.M) * 4);
  return out;
}

namespace {
// counts[m] = fired[m] ? 0 : counts[m] + tokens; dead[m] = counts[m] > threshold; fired cleared.
// Entry M carries (and clears) the out-of-range flag of mark_fired_kernel.
__global__ void update_dead_kernel(double* __restrict__ counts, int* __restrict__ fired, int64_t M, double tokens,
                                   double threshold, int* __restrict__ dead) {
  for (int64_t m = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; m <= M; m += int64_t(gridDim.x) * blockDim.x) {
    if (m == M) {
      dead[M] = fired[M];
      fired[M] = 0;
      continue;
    }
    const double c = fired[m] ? 0.0 : counts[m] + tokens;
    counts[m] = c;
    dead[m] = c > threshold ? 1 : 0;
    fired[m] = 0;
  }
}

void set_dead_host(ResidentSae& sae, const int32_t* dead) {
  int32_t* out = sae.dead_host.data<int32_t>();
  sae.num_dead = 0;
  for (int64_t m = 0; m < sae.M; ++m) {
    out[m] = dead[m];
    sae.num_dead += dead[m] != 0;
  }
}
}  // namespace

int64_t sae_update_dead(ResidentSae& sae, double tokens) {
  Session ses;
  cudaStream_t s = ses.stream();
  DeviceBuffer dead(size_t(sae.M + 1) * 4, s);
  SPX_LAUNCH(grid_for(sae.M + 1), 256, 0, s, update_dead_kernel)(reinterpret_cast<double*>(sae.since_fired.p),
                                                               reinterpret_cast<int*>(sae.fired.p), sae.M, tokens,
                                                               sae.dead_threshold, dead.as<int>());
  CUDA_CHECK_LAUNCH();
  Tensor host = download(dead.get(), {sae.M + 1}, DType::I32, s);
  ses.sync();
  if (host.data<int32_t>()[sae.M]) throw NativeError(ErrorKind::Internal, "CUDA encoder selected a latent index outside [0, num_latents)");
  // A fresh host tensor: a step still reading the previous mask keeps its own.
  sae.dead_host = Tensor::empty({sae.M}, DType::I32);
  set_dead_host(sae, host.data<int32_t>());
  return sae.num_dead;
}

std::vector<double> sae_read_dead(ResidentSae& sae) {
  Session ses;
  std::vector<double> out(size_t(sae.M));
  if (sae.M) CUDA_CHECK(cudaMemcpyAsync(out.data(), sae.since_fired.p, size_t(sae.M) * 8, cudaMemcpyDeviceToHost, ses.stream()));
  ses.sync();
  return out;
}

void sae_load_dead(ResidentSae& sae, const std::vector<double>& counts, double threshold) {
  if (!counts.empty() && int64_t(counts.size()) != sae.M)
    throw NativeError(ErrorKind::Shape, "dead-latent counters have " + std::to_string(counts.size()) +
                                            " entries, expected num_latents=" + std::to_string(sae.M));
  std::vector<double> c = counts.empty() ? std::vector<double>(size_t(sae.M), 0.0) : counts;
  Session ses;
  if (sae.M) CUDA_CHECK(cudaMemcpyAsync(sae.since_fired.p, c.data(), size_t(sae.M) * 8, cudaMemcpyHostToDevice, ses.stream()));
  ses.sync();
  sae.dead_threshold = threshold;
  std::vector<int32_t> dead(size_t(sae.M));
  for (int64_t m = 0; m < sae.M; ++m) dead[size_t(m)] = c[size_t(m)] > threshold ? 1 : 0;
  sae.dead_host = Tensor::empty({sae.M}, DType::I32);
  set_dead_host(sae, dead.data());
}

int64_t sae_num_dead(const ResidentSae& sae) { return sae.num_dead; }

SaeCodes sae_encode(ResidentSae& sae, const Tensor& x, int64_t k, bool groupmax, bool pre_acts) {
  const int64_t N = x.dim(0);
  Session ses;
  cudaStream_t s = ses.stream();
  EncoderInputs in = encoder_inputs(sae, x, N, s);
  EncodeOptions o;
  o.k = k;
  o.groupmax = groupmax;
  o.compute = sae.cfg.compute;
  o.pre_acts = pre_acts;
  DeviceEncodeOut enc = encode_on_device(ses, sae.cfg.compute, in.Xc.get(), in.Wc.get(), sae.b_enc.p, N, sae.D, sae.M, o);
  SaeCodes r;
  r.acts = download(enc.vals.get(), {N, k}, DType::F32, s);
  r.indices = download(enc.idx.get(), {N, k}, DType::I32, s);
  if (pre_acts) r.pre_acts = download(enc.pre.get(), {N, sae.M}, DType::F32, s);
  ses.sync();
  return r;
}

Tensor sae_decode(ResidentSae& sae, const Tensor& acts, const Tensor& indices) {
  const int64_t N = acts.dim(0), k = acts.dim(1), D = sae.D;
  if (N == 0) return Tensor::empty({0, D}, DType::F32);  // no zero-sized launches
  Session ses;
  cudaStream_t s = ses.stream();
  // Device acts are viewed as they are when f32; other dtypes convert on the host (to() is host-only).
  const Tensor af = acts.dtype == DType::F32 ? acts : host_copy(acts).to(DType::F32);  // alive until the sync below
  DeviceTensor da = upload(af, s);
  DeviceTensor di = upload(indices, s);
  DeviceBuffer out(size_t(std::max<int64_t>(N * D, 1)) * 4, s);
  embedding_bag(static_cast<const float*>(da.data()), static_cast<const int*>(di.data()), N, int(k), sae.w_dec.p,
                DType::F32, D, sae.b_dec.p, DType::F32, out.as<float>(), s);
  Tensor r = download(out.get(), {N, D}, DType::F32, s);
  ses.sync();
  return r;
}

double sae_apply(ResidentSae& sae, const SaeOptim& o) {
  Session ses;
  cudaStream_t s = ses.stream();
  const bool project = o.project < 0 ? (!sae.cfg.transcode && sae.cfg.normalize_decoder) : o.project > 0;
  if (project) project_grad_dev(sae.g_w_dec.p, sae.w_dec.p, sae.M, sae.D, s);
  // SAELens's clip_grad_norm_ over every gradient (after the projection, as the CPU state).
  DeviceBuffer sumsq;
  double host_sumsq = -1.0;
  if (o.max_grad_norm > 0) {
    std::vector<GradBuffer> grads;
    for (int i = 0; i < sae.num_params(); ++i)
      if (sae.has(i) && sae.grad(i).n > 0) grads.push_back({sae.grad(i).p, sae.grad(i).n});
    sumsq = DeviceBuffer(sizeof(double), s);
    double* ss = static_cast<double*>(sumsq.get());
    grad_sum_squares(grads, ss, s);
    for (const GradBuffer& b : grads) grad_scale(b.g, b.n, ss, o.max_grad_norm, s);
    CUDA_CHECK(cudaMemcpyAsync(&host_sumsq, ss, sizeof(double), cudaMemcpyDeviceToHost, s));
  }
  for (int i = 0; i < sae.num_params(); ++i) {
    if (!sae.has(i)) continue;
    DevArray &p = sae.param(i), &g = sae.grad(i);
    if (p.n == 0) continue;
    if (o.muon && (i == 0 || i == 2 || i == 4)) {  // the 2-D parameters (W_enc, W_dec [M, D]; W_skip [D, D]): Muon
      DevArray& buf = sae.m[i];             // the momentum buffer (the CPU muon's 'exp_avg')
      if (!buf.p) {
        buf.alloc(p.n);
        CUDA_CHECK(cudaMemsetAsync(buf.p, 0, size_t(p.n) * 4, s));
      }
      const int64_t rows = i == 4 ? sae.D : sae.M;
      muon_dev(p.p, g.p, buf.p, rows, sae.D, o.lr, o.momentum, o.nesterov, o.weight_decay, o.ns_steps, s);
    } else if (o.signum) {
      if (!sae.z[i].p) {  // schedule-free: z starts as a copy of the parameter
        sae.z[i].alloc(p.n);
        CUDA_CHECK(cudaMemcpyAsync(sae.z[i].p, p.p, size_t(p.n) * 4, cudaMemcpyDeviceToDevice, s));
      }
      signum_dev(p.p, sae.z[i].p, g.p, p.n, o.lr, o.c, o.beta, s);
    } else {
      // Moments start at zero (each checked alone: a loaded state always has both, but never pass null).
      for (DevArray* a : {&sae.m[i], &sae.v[i]}) {
        if (a->p) continue;
        a->alloc(p.n);
        CUDA_CHECK(cudaMemsetAsync(a->p, 0, size_t(p.n) * 4, s));
      }
      // muon's Adam half (1-D parameters) runs at its own lr.
      adam_dev(p.p, g.p, sae.m[i].p, sae.v[i].p, p.n, o.muon ? o.lr_vector : o.lr, o.beta1, o.beta2, o.eps, o.step, s);
    }
    CUDA_CHECK(cudaMemsetAsync(g.p, 0, size_t(g.n) * 4, s));
  }
  ses.sync();
  return o.max_grad_norm > 0 ? std::sqrt(host_sumsq) : -1.0;
}

SaeParams sae_read(ResidentSae& sae, double eval_beta, bool with_grads) {
  Session ses;
  cudaStream_t s = ses.stream();
  Tensor t[kSaeMaxParams], zt[kSaeMaxParams], gt[kSaeMaxParams];
  for (int i = 0; i < sae.num_params(); ++i) {
    if (!sae.has(i)) continue;
    t[i] = download(sae.param(i).p, sae.shape(i), DType::F32, s);
    if (eval_beta > 0 && sae.z[i].p) zt[i] = download(sae.z[i].p, sae.shape(i), DType::F32, s);
    if (with_grads) gt[i] = download(sae.grad(i).p, sae.shape(i), DType::F32, s);
  }
  ses.sync();
  for (int i = 0; i < sae.num_params(); ++i) {
    if (!zt[i].defined()) continue;
    // eval(): p.lerp_(z, 1 − 1/β), torch's lerp formula in f32
    float w = float(1.0 - 1.0 / eval_beta);
    float* p = t[i].data<float>();
    const float* z = zt[i].data<float>();
    for (int64_t j = 0, n = t[i].numel(); j < n; ++j)
      p[j] = std::fabs(w) < 0.5f ? p[j] + w * (z[j] - p[j]) : z[j] - (z[j] - p[j]) * (1.f - w);
  }
  return SaeParams{t[0], t[1], t[2], t[3], t[4], t[5], gt[0], gt[1], gt[2], gt[3], gt[4], gt[5]};
}

namespace {
// p = lerp(p, z, w), torch's f32 formula (as the CPU optimLerp and optim.cu's torch_lerp).
__global__ void lerp_z_kernel(float* __restrict__ p, const float* __restrict__ z, int64_t n, float w) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    p[i] = fabsf(w) < 0.5f ? p[i] + w * (z[i] - p[i]) : z[i] - (z[i] - p[i]) * (1.f - w);
}
}  // namespace

SaeOptState sae_read_state(ResidentSae& sae) {
  Session ses;
  cudaStream_t s = ses.stream();
  SaeOptState st;
  for (int i = 0; i < sae.num_params(); ++i) {
    if (!sae.has(i)) continue;
    if (sae.m[i].p) st.m[i] = download(sae.m[i].p, sae.shape(i), DType::F32, s);
    if (sae.v[i].p) st.v[i] = download(sae.v[i].p, sae.shape(i), DType::F32, s);
    if (sae.z[i].p) st.z[i] = download(sae.z[i].p, sae.shape(i), DType::F32, s);
  }
  ses.sync();
  return st;
}

void sae_load_state(ResidentSae& sae, const Tensor (&params)[kSaeMaxParams], const SaeOptState& st, bool reset_optimizer,
                    bool zero_grads) {
  Session ses;
  cudaStream_t s = ses.stream();
  if (reset_optimizer) {
    ses.sync();  // cudaFree below waits for users anyway; this keeps the order obvious
    for (int i = 0; i < kSaeMaxParams; ++i) {
      sae.m[i].reset();
      sae.v[i].reset();
      sae.z[i].reset();
    }
  }
  // Host sources stay alive (held by the caller / `conv`) until the sync at the end.
  std::vector<Tensor> conv;
  auto put = [&](DevArray& dst, const Tensor& src) {
    if (!src.defined()) return;
    const Tensor f = src.dtype == DType::F32 ? src : host_copy(src).to(DType::F32);  // host or device source
    conv.push_back(f);
    if (!dst.p) dst.alloc(f.numel());
    if (f.nbytes()) CUDA_CHECK(cudaMemcpyAsync(dst.p, f.raw(), f.nbytes(), cudaMemcpyDefault, s));
  };
  for (int i = 0; i < sae.num_params(); ++i) {  // the binding rejects entries for slots the state lacks
    if (!sae.has(i)) continue;
    put(sae.param(i), params[i]);
    put(sae.m[i], st.m[i]);
    put(sae.v[i], st.v[i]);
    put(sae.z[i], st.z[i]);
    if (zero_grads && sae.grad(i).n) CUDA_CHECK(cudaMemsetAsync(sae.grad(i).p, 0, size_t(sae.grad(i).n) * 4, s));
  }
  ses.sync();
}

void sae_lerp_z(ResidentSae& sae, double weight) {
  Session ses;
  cudaStream_t s = ses.stream();
  for (int i = 0; i < sae.num_params(); ++i) {
    DevArray& p = sae.param(i);
    if (!sae.z[i].p || p.n == 0) continue;
    SPX_LAUNCH(grid_for(p.n), 256, 0, s, lerp_z_kernel)(p.p, sae.z[i].p, p.n, float(weight));
    CUDA_CHECK_LAUNCH();
  }
  ses.sync();
}

const SaeConfig& sae_config(const ResidentSae& sae) { return sae.cfg; }

}  // namespace cuda
}  // namespace sparsify
