// The start-up self-test: every kernel family a `device: 'cuda'` run uses (both GEMM main loops,
// mma.sync and, where gemm_path() runs it, wgmma; the fused encoder with AuxK; decode and both
// backward passes; Adam, schedule-free signum, Muon with Newton–Schulz, gradient clipping; the model-forward ops), each
// on a small random problem, against plain host loops in double (or the float64 references of
// native/ref) on the same bf16-rounded inputs where the GPU rounds. A mismatch or a CUDA error
// names the family; the TS side then disables CUDA for the process (packages/core/src/
// cuda-self-test.ts). Tolerances are far above f32 summation order effects and far below what a
// layout or indexing error gives (O(1)).
#include "cuda/self_test.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <random>
#include <vector>

#include "core/errors.h"
#include "cpu/layers.h"
#include "cpu/grad_clip.h"
#include "cpu/optim.h"
#include "cuda/cuda_context.h"
#include "cuda/cuda_ops.h"
#include "cuda/device_ops.h"
#include "cuda/gemm_path.h"

namespace sparsify {
namespace cuda {
namespace {

float bf16_round(float v) {  // round to nearest even, as the device's conversion
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  std::memcpy(&v, &u, 4);
  return v;
}

struct Problem {
  std::mt19937 rng{20251201};
  Tensor rand(std::vector<int64_t> shape, bool bf16) {
    Tensor t = Tensor::empty(shape, DType::F32);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = bf16 ? bf16_round(u(rng)) : u(rng);
    return t;
  }
};

const float* host_f32(const Tensor& t, Tensor& keep) {
  keep = t.device() == Device::CPU ? t : host_copy(t);
  return keep.data<float>();
}

// The fault-injection hook of the emulated build's tests: SPARSIFY_CUDA_SELFTEST_FAULT=<family>
// corrupts that family's device result, so the fallback can be tested without broken hardware.
void maybe_inject(const char* family, float* p) {
#ifdef SPARSIFY_CUDA_EMU
  const char* f = std::getenv("SPARSIFY_CUDA_SELFTEST_FAULT");
  if (f && std::string(f) == family) p[0] += 1.f;
#else
  (void)family;
  (void)p;
#endif
}

// "" when every |got - want| <= tol * max(1, max |want|), else a description of the worst entry.
std::string compare(const char* what, const float* got, const std::vector<double>& want, double tol) {
  double mx = 1;
  for (double w : want) mx = std::max(mx, std::fabs(w));
  size_t worst = 0;
  double wd = -1;
  for (size_t i = 0; i < want.size(); ++i) {
    double d = std::isfinite(got[i]) ? std::fabs(double(got[i]) - want[i]) : INFINITY;
    if (d > wd) wd = d, worst = i;
  }
  if (wd <= tol * mx) return "";
  return std::string(what) + "[" + std::to_string(worst) + "] = " + std::to_string(got[worst]) + ", expected " +
         std::to_string(want[worst]) + " (tolerance " + std::to_string(tol * mx) + ")";
}

uint16_t bf16_bits(float v) {  // v already bf16-representable
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return uint16_t(u >> 16);
}

// One main loop (mma.sync, or wgmma where gemm_path() runs it) on device buffers: odd M and N, a
// K of three 32-wide slices, output poisoned with NaN first.
std::string check_gemm_path(Problem& pr, bool wgmma, const char* family) {
  const int64_t M = 70, N = 130, K = 96;
  Tensor a = pr.rand({M, K}, true), b = pr.rand({N, K}, true), bias = pr.rand({N}, false);
  std::vector<uint16_t> ha(size_t(M * K)), hb(size_t(N * K));
  for (size_t i = 0; i < ha.size(); ++i) ha[i] = bf16_bits(a.data<float>()[i]);
  for (size_t i = 0; i < hb.size(); ++i) hb[i] = bf16_bits(b.data<float>()[i]);
  std::vector<float> got(size_t(M * N));
  {
    Session ses;
    cudaStream_t s = ses.stream();
    DeviceBuffer A(ha.size() * 2, s), B(hb.size() * 2, s), C(got.size() * 4, s), dbias(size_t(N) * 4, s);
    CUDA_CHECK(cudaMemcpyAsync(A.get(), ha.data(), A.bytes(), cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemcpyAsync(B.get(), hb.data(), B.bytes(), cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemcpyAsync(dbias.get(), bias.data<float>(), dbias.bytes(), cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemsetAsync(C.get(), 0xFF, C.bytes(), s));
    gemm_bf16_dev_on_path(wgmma, A.get(), B.get(), dbias.as<float>(), C.as<float>(), M, N, K, s);
    CUDA_CHECK(cudaMemcpyAsync(got.data(), C.get(), C.bytes(), cudaMemcpyDeviceToHost, s));
    ses.sync();
  }
  maybe_inject(family, got.data());
  std::vector<double> want(size_t(M * N));
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double sum = bias.data<float>()[j];
      for (int64_t k = 0; k < K; ++k) sum += double(a.data<float>()[i * K + k]) * b.data<float>()[j * K + k];
      want[size_t(i * N + j)] = sum;
    }
  return compare("C", got.data(), want, 1e-3);
}

// The dense matmul entry point (conversion, padding, transposed B, the path gemm_path() chose).
std::string check_matmul(Problem& pr) {
  const int64_t M = 33, N = 45, K = 50;
  Tensor a = pr.rand({M, K}, true), b = pr.rand({K, N}, true), keep;
  float* g = const_cast<float*>(host_f32(matmul(a, b, false, Tensor(), DType::BF16), keep));
  maybe_inject("matmul", g);
  std::vector<double> want(size_t(M * N));
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double sum = 0;
      for (int64_t k = 0; k < K; ++k) sum += double(a.data<float>()[i * K + k]) * b.data<float>()[k * N + j];
      want[size_t(i * N + j)] = sum;
    }
  return compare("C", g, want, 1e-3);
}

// TopK of ReLU(x·W_encᵀ + b_enc) and AuxK over the dead latents: the selected values (as sorted
// lists) and, for every selected index, the reference value of that latent.
std::string check_encoder(Problem& pr) {
  const int64_t N = 12, D = 64, M = 200, k = 8, k_aux = 16;
  Tensor x = pr.rand({N, D}, true), w = pr.rand({M, D}, true), b = pr.rand({M}, false);
  Tensor dead = Tensor::zeros({M}, DType::I32);
  for (int64_t m = 0; m < M; m += 3) dead.data<int32_t>()[m] = 1;
  EncodeOptions o;
  o.k = k;
  o.dead_mask = dead;
  o.k_aux = k_aux;
  EncodeResult r = topk_encode(x, w, b, o);
  std::vector<double> pre(size_t(N * M));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m) {
      double s = b.data<float>()[m];
      for (int64_t d = 0; d < D; ++d) s += double(x.data<float>()[n * D + d]) * w.data<float>()[m * D + d];
      pre[size_t(n * M + m)] = std::max(s, 0.0);
    }
  auto check = [&](const Tensor& acts, const Tensor& idx, int64_t kk, bool aux) -> std::string {
    Tensor ka, ki;
    float* got = const_cast<float*>(host_f32(acts, ka));
    if (!aux) maybe_inject("encoder", got);
    ki = idx.device() == Device::CPU ? idx : host_copy(idx);
    std::vector<double> want_sorted, at_index;
    std::vector<float> got_sorted;
    for (int64_t n = 0; n < N; ++n) {
      std::vector<double> cand;
      for (int64_t m = 0; m < M; ++m)
        if (!aux || dead.data<int32_t>()[m]) cand.push_back(pre[size_t(n * M + m)]);
      std::sort(cand.rbegin(), cand.rend());
      std::vector<float> row(got + n * kk, got + (n + 1) * kk);
      std::sort(row.rbegin(), row.rend());
      for (int64_t j = 0; j < kk; ++j) {
        want_sorted.push_back(cand[size_t(j)]);
        got_sorted.push_back(row[size_t(j)]);
        int32_t m = ki.data<int32_t>()[n * kk + j];
        if (m < 0 || m >= M || (aux && !dead.data<int32_t>()[m]))
          return std::string(aux ? "AuxK" : "TopK") + " index " + std::to_string(m) + " in row " + std::to_string(n) +
                 " is not a candidate latent";
        at_index.push_back(pre[size_t(n * M + m)]);
      }
    }
    std::string e = compare(aux ? "aux_acts (sorted)" : "acts (sorted)", got_sorted.data(), want_sorted, 1e-3);
    if (e.empty()) e = compare(aux ? "aux_acts at their indices" : "acts at their indices", got, at_index, 1e-3);
    return e;
  };
  std::string e = check(r.acts, r.indices, k, false);
  if (e.empty()) e = check(r.aux_acts, r.aux_indices, k_aux, true);
  return e;
}

std::string check_decode(Problem& pr, bool backward) {
  const int64_t N = 10, k = 6, M = 90, D = 48;
  Tensor acts = pr.rand({N, k}, false), w = pr.rand({M, D}, false), bdec = pr.rand({D}, false);
  Tensor idx = Tensor::empty({N, k}, DType::I32);
  for (int64_t i = 0; i < N * k; ++i) idx.data<int32_t>()[i] = int32_t((i * 37 + 11) % M);
  if (!backward) {
    Tensor keep;
    float* g = const_cast<float*>(host_f32(decode(acts, idx, w, bdec), keep));
    maybe_inject("decode", g);
    std::vector<double> want(size_t(N * D));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t d = 0; d < D; ++d) {
        double s = bdec.data<float>()[d];
        for (int64_t j = 0; j < k; ++j) s += double(acts.data<float>()[n * k + j]) * w.data<float>()[idx.data<int32_t>()[n * k + j] * D + d];
        want[size_t(n * D + d)] = s;
      }
    return compare("out", g, want, 1e-4);
  }
  Tensor go = pr.rand({N, D}, false), k1, k2;
  DecodeGrads gr = decode_backward(go, acts, idx, w);
  float* gw = const_cast<float*>(host_f32(gr.grad_w_dec, k1));
  const float* ga = host_f32(gr.grad_acts, k2);
  maybe_inject("decode_backward", gw);
  std::vector<double> want_w(size_t(M * D), 0.0), want_a(size_t(N * k), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < k; ++j) {
      int32_t m = idx.data<int32_t>()[n * k + j];
      for (int64_t d = 0; d < D; ++d) {
        want_w[size_t(m * D + d)] += double(acts.data<float>()[n * k + j]) * go.data<float>()[n * D + d];
        want_a[size_t(n * k + j)] += double(go.data<float>()[n * D + d]) * w.data<float>()[m * D + d];
      }
    }
  std::string e = compare("grad_w_dec", gw, want_w, 1e-4);
  if (e.empty()) e = compare("grad_acts", ga, want_a, 1e-4);
  return e;
}

std::string check_adam(Problem& pr) {
  const int64_t n = 777;
  Tensor p = pr.rand({n}, false), g = pr.rand({n}, false), m = pr.rand({n}, false), v = pr.rand({n}, false), keep;
  for (int64_t i = 0; i < n; ++i) v.data<float>()[i] = std::fabs(v.data<float>()[i]);
  const double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  const int64_t step = 3;
  AdamState st = adam_step(p, g, m, v, lr, b1, b2, eps, step);
  float* got = const_cast<float*>(host_f32(st.param, keep));
  maybe_inject("adam", got);
  std::vector<double> want(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {  // torch.optim.Adam (bias-corrected)
    double gi = g.data<float>()[i];
    double mi = b1 * m.data<float>()[i] + (1 - b1) * gi, vi = b2 * v.data<float>()[i] + (1 - b2) * gi * gi;
    double mh = mi / (1 - std::pow(b1, double(step))), vh = vi / (1 - std::pow(b2, double(step)));
    want[size_t(i)] = p.data<float>()[i] - lr * mh / (std::sqrt(vh) + eps);
  }
  return compare("param", got, want, 1e-4);
}

// Global gradient-norm clipping over two buffers (the norm of 1077 U(-1, 1) values is ~19, so
// max_norm 1 scales them) against the float64 reference.
std::string check_grad_clip(Problem& pr) {
  const int64_t n0 = 1000, n1 = 77;
  Tensor a = pr.rand({n0}, false), b = pr.rand({n1}, false);
  Session ses;
  cudaStream_t s = ses.stream();
  DeviceTensor da = upload_owned(a, s), db = upload_owned(b, s);
  DeviceBuffer ss(sizeof(double), s);
  std::vector<GradBuffer> bufs = {{static_cast<float*>(da.buf.get()), n0}, {static_cast<float*>(db.buf.get()), n1}};
  const double max_norm = 1.0;
  grad_sum_squares(bufs, static_cast<double*>(ss.get()), s);
  for (const GradBuffer& x : bufs) grad_scale(x.g, x.n, static_cast<const double*>(ss.get()), max_norm, s);
  Tensor ra = download(da.buf.get(), {n0}, DType::F32, s), rb = download(db.buf.get(), {n1}, DType::F32, s);
  ses.sync();
  maybe_inject("grad_clip", ra.data<float>());
  std::vector<std::vector<double>> want = {std::vector<double>(a.data<float>(), a.data<float>() + n0),
                                           std::vector<double>(b.data<float>(), b.data<float>() + n1)};
  clip_grad_norm_ref(want, max_norm);
  std::string e = compare("grad_clip[0]", ra.data<float>(), want[0], 1e-5);
  if (e.empty()) e = compare("grad_clip[1]", rb.data<float>(), want[1], 1e-5);
  return e;
}

std::string check_encoder_backward(Problem& pr) {
  const int64_t N = 10, k = 6, M = 90, D = 48;
  Tensor ga = pr.rand({N, k}, false), x = pr.rand({N, D}, false), w = pr.rand({M, D}, false), k1, k2, k3;
  Tensor idx = Tensor::empty({N, k}, DType::I32);
  for (int64_t i = 0; i < N * k; ++i) idx.data<int32_t>()[i] = int32_t((i * 53 + 7) % M);
  EncoderGrads gr = encoder_backward(ga, idx, x, w);
  float* gx = const_cast<float*>(host_f32(gr.grad_x, k1));
  const float* gw = host_f32(gr.grad_w_enc, k2);
  const float* gb = host_f32(gr.grad_b_enc, k3);
  maybe_inject("encoder_backward", gx);
  std::vector<double> want_x(size_t(N * D), 0.0), want_w(size_t(M * D), 0.0), want_b(size_t(M), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < k; ++j) {
      const int32_t m = idx.data<int32_t>()[n * k + j];
      const double g = ga.data<float>()[n * k + j];
      want_b[size_t(m)] += g;
      for (int64_t d = 0; d < D; ++d) {
        want_x[size_t(n * D + d)] += g * w.data<float>()[m * D + d];
        want_w[size_t(m * D + d)] += g * x.data<float>()[n * D + d];
      }
    }
  std::string e = compare("grad_x", gx, want_x, 1e-4);
  if (e.empty()) e = compare("grad_w_enc", gw, want_w, 1e-4);
  if (e.empty()) e = compare("grad_b_enc", gb, want_b, 1e-4);
  return e;
}

// Schedule-free SignSGD (optim.cu): x = lerp(y, z, 1-1/β); z -= lr·sign(g); x = lerp(x, z, c);
// y = lerp(x, z, 1-β), in double.
std::string check_signum(Problem& pr) {
  const int64_t n = 777;
  Tensor y = pr.rand({n}, false), z = pr.rand({n}, false), g = pr.rand({n}, false), k1, k2;
  const double lr = 0.05, c = 0.3, beta = 0.9;
  SignumState st = signum_step(y, z, g, lr, c, beta);
  float* gy = const_cast<float*>(host_f32(st.y, k1));
  const float* gz = host_f32(st.z, k2);
  maybe_inject("signum", gy);
  auto lerp = [](double a, double b, double w) { return a + w * (b - a); };
  std::vector<double> want_y(static_cast<size_t>(n)), want_z(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double gi = g.data<float>()[i];
    double x = lerp(y.data<float>()[i], z.data<float>()[i], 1 - 1 / beta);
    const double zi = z.data<float>()[i] - lr * (gi > 0 ? 1 : gi < 0 ? -1 : 0);
    x = lerp(x, zi, c);
    want_y[size_t(i)] = lerp(x, zi, 1 - beta);
    want_z[size_t(i)] = zi;
  }
  std::string e = compare("y", gy, want_y, 1e-5);
  if (e.empty()) e = compare("z", gz, want_z, 1e-5);
  return e;
}

// Muon with Nesterov momentum, weight decay and Newton–Schulz on a tall parameter (the transposed
// side), against the float64 reference (native/ref). Compared: the orthogonalised update O =
// (p_before·(1 − lr·wd) − p_after) / (lr·0.2·sqrt(max(r, c))), whose entries are O(1); the bf16
// GEMM operands of Newton–Schulz put it within a few percent (coder.test.ts's calibration).
std::string check_muon(Problem& pr) {
  const int64_t R = 40, C = 24, n = R * C;
  const double lr = 0.02, mom = 0.95, wd = 0.1;
  const int steps = 5;
  Tensor p = pr.rand({R, C}, false), g = pr.rand({R, C}, false), buf = pr.rand({R, C}, false);
  std::vector<float> got(static_cast<size_t>(n));
  {
    Session ses;
    cudaStream_t s = ses.stream();
    DeviceBuffer dp(size_t(n) * 4, s), dg(size_t(n) * 4, s), db(size_t(n) * 4, s);
    CUDA_CHECK(cudaMemcpyAsync(dp.get(), p.data<float>(), dp.bytes(), cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemcpyAsync(dg.get(), g.data<float>(), dg.bytes(), cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemcpyAsync(db.get(), buf.data<float>(), db.bytes(), cudaMemcpyHostToDevice, s));
    muon_dev(dp.as<float>(), dg.as<float>(), db.as<float>(), R, C, lr, mom, true, wd, steps, s);
    CUDA_CHECK(cudaMemcpyAsync(got.data(), dp.get(), dp.bytes(), cudaMemcpyDeviceToHost, s));
    ses.sync();
  }
  std::vector<double> rp(static_cast<size_t>(n)), rg(static_cast<size_t>(n)), rb(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) rp[size_t(i)] = p.data<float>()[i], rg[size_t(i)] = g.data<float>()[i], rb[size_t(i)] = buf.data<float>()[i];
  muon_step_ref(R, C, rp.data(), rg.data(), rb.data(), lr, mom, true, wd, steps);
  const double scale = lr * 0.2 * std::sqrt(double(std::max(R, C)));
  std::vector<float> o(static_cast<size_t>(n));
  std::vector<double> want(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double decayed = double(p.data<float>()[i]) * (1 - lr * wd);
    o[size_t(i)] = float((decayed - got[size_t(i)]) / scale);
    want[size_t(i)] = (decayed - rp[size_t(i)]) / scale;
  }
  maybe_inject("muon", o.data());
  return compare("orthogonalised update", o.data(), want, 0.15);
}

std::string check_layer_norm(Problem& pr) {
  const int64_t R = 9, D = 40;
  Tensor x = pr.rand({R, D}, false), w = pr.rand({D}, false), b = pr.rand({D}, false), keep;
  float* got = const_cast<float*>(host_f32(layer_norm(x, w, b, 1e-5f), keep));
  maybe_inject("layer_norm", got);
  std::vector<double> want(size_t(R * D));
  for (int64_t r = 0; r < R; ++r) {
    double mu = 0, var = 0;
    for (int64_t d = 0; d < D; ++d) mu += x.data<float>()[r * D + d];
    mu /= double(D);
    for (int64_t d = 0; d < D; ++d) var += std::pow(x.data<float>()[r * D + d] - mu, 2);
    var /= double(D);
    for (int64_t d = 0; d < D; ++d)
      want[size_t(r * D + d)] = (x.data<float>()[r * D + d] - mu) / std::sqrt(var + 1e-5) * w.data<float>()[d] + b.data<float>()[d];
  }
  return compare("layer_norm", got, want, 1e-4);
}

// RMS norm, plain (Llama: w·x/rms) and Gemma's (1 + w)·x/rms.
std::string check_rms_norm(Problem& pr) {
  const int64_t R = 7, D = 72;
  Tensor x = pr.rand({R, D}, false), w = pr.rand({D}, false);
  for (bool add_one : {false, true}) {
    Tensor keep;
    float* got = const_cast<float*>(host_f32(rms_norm(x, w, 1e-6f, add_one), keep));
    if (add_one) maybe_inject("rms_norm", got);
    std::vector<double> want(size_t(R * D));
    for (int64_t r = 0; r < R; ++r) {
      double ss = 0;
      for (int64_t d = 0; d < D; ++d) ss += std::pow(double(x.data<float>()[r * D + d]), 2);
      const double inv = 1 / std::sqrt(ss / double(D) + 1e-6);
      for (int64_t d = 0; d < D; ++d)
        want[size_t(r * D + d)] = x.data<float>()[r * D + d] * inv * (add_one ? 1.0 + w.data<float>()[d] : double(w.data<float>()[d]));
    }
    std::string e = compare(add_one ? "rms_norm (1 + w)" : "rms_norm", got, want, 1e-4);
    if (!e.empty()) return e;
  }
  return "";
}

// Rotary embedding over part of each head (rotary_dim < head_dim), NeoX halves and GPT-J pairs.
std::string check_rope(Problem& pr) {
  const int64_t T = 6, H = 3, hd = 16, rd = 12;
  const double theta = 10000;
  Tensor x = pr.rand({T, H, hd}, false), pos = Tensor::empty({T}, DType::I32);
  for (int64_t t = 0; t < T; ++t) pos.data<int32_t>()[t] = int32_t(3 * t + 1);
  for (bool neox : {true, false}) {
    Tensor keep;
    float* got = const_cast<float*>(host_f32(rope(x, pos, theta, rd, neox), keep));
    if (!neox) maybe_inject("rope", got);
    std::vector<double> want(size_t(T * H * hd));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h) {
        const float* v = x.data<float>() + (t * H + h) * hd;
        double* o = want.data() + (t * H + h) * hd;
        for (int64_t d = rd; d < hd; ++d) o[d] = v[d];
        for (int64_t i = 0; i < rd / 2; ++i) {
          const double ang = pos.data<int32_t>()[t] * std::pow(theta, -double(2 * i) / double(rd));
          const int64_t a = neox ? i : 2 * i, b = neox ? i + rd / 2 : 2 * i + 1;
          o[a] = v[a] * std::cos(ang) - v[b] * std::sin(ang);
          o[b] = v[b] * std::cos(ang) + v[a] * std::sin(ang);
        }
      }
    std::string e = compare(neox ? "rope (neox)" : "rope (interleaved)", got, want, 1e-4);
    if (!e.empty()) return e;
  }
  return "";
}

// The MLP activations (GELU erf and tanh, SiLU, ReLU, QuickGELU) on [-4, 4).
std::string check_activation(Problem& pr) {
  const int64_t n = 300;
  Tensor x = pr.rand({n}, false);
  for (int64_t i = 0; i < n; ++i) x.data<float>()[i] *= 4;
  struct Case {
    Act act;
    const char* name;
    double (*f)(double);
  };
  const Case acts[] = {
      {Act::GeluErf, "gelu (erf)", [](double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); }},
      {Act::GeluTanh, "gelu (tanh)", [](double v) { return 0.5 * v * (1 + std::tanh(std::sqrt(2 / 3.14159265358979323846) * (v + 0.044715 * v * v * v))); }},
      {Act::Silu, "silu", [](double v) { return v / (1 + std::exp(-v)); }},
      {Act::Relu, "relu", [](double v) { return std::max(v, 0.0); }},
      {Act::QuickGelu, "quick_gelu", [](double v) { return v / (1 + std::exp(-1.702 * v)); }},
  };
  for (const auto& [act, name, f] : acts) {
    Tensor keep;
    float* got = const_cast<float*>(host_f32(activation(x, act), keep));
    if (act == Act::QuickGelu) maybe_inject("activation", got);
    std::vector<double> want(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) want[size_t(i)] = f(x.data<float>()[i]);
    std::string e = compare(name, got, want, 1e-5);
    if (!e.empty()) return e;
  }
  return "";
}

// Causal attention with grouped KV heads, a sliding window and soft-capping, against the float64
// reference loop of the CPU forward (native/ref/attention_reference.cpp).
std::string check_attention(Problem& pr) {
  const int64_t T = 13, Hq = 4, Hkv = 2, hd = 16, window = 5;
  const float softcap = 2.f, scale = 1.f / std::sqrt(float(hd));
  Tensor q = pr.rand({T, Hq, hd}, false), k = pr.rand({T, Hkv, hd}, false), v = pr.rand({T, Hkv, hd}, false), keep;
  AttentionOptions o;
  o.scale = scale;
  o.window = window;
  o.softcap = softcap;
  float* got = const_cast<float*>(host_f32(attention(q, k, v, o), keep));
  maybe_inject("attention", got);
  std::vector<float> ref(size_t(T * Hq * hd));
  model::attention_reference({q.data<float>(), Hq * hd, 0, hd}, {k.data<float>(), Hkv * hd, 0, hd},
                             {v.data<float>(), Hkv * hd, 0, hd}, ref.data(), 1, T, Hq, Hkv, hd, scale, softcap, window);
  return compare("attention", got, std::vector<double>(ref.begin(), ref.end()), 1e-4);
}

// The row gather of the embedding lookup and of host-activation batches (row_gather.cu).
std::string check_gather(Problem& pr) {
  const int64_t N = 50, D = 36, n = 17;
  Tensor x = pr.rand({N, D}, false), idx = Tensor::empty({n}, DType::I32), keep;
  for (int64_t r = 0; r < n; ++r) idx.data<int32_t>()[r] = int32_t((r * 29 + 3) % N);
  float* got = const_cast<float*>(host_f32(gather_rows(x, idx), keep));
  maybe_inject("gather", got);
  std::vector<double> want(size_t(n * D));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t d = 0; d < D; ++d) want[size_t(r * D + d)] = x.data<float>()[idx.data<int32_t>()[r] * D + d];
  return compare("rows", got, want, 0);
}

bool wgmma_in_use() {
  Session ses;
  return gemm_path(ses.stream()).wgmma;
}

SelfTestResult run() {
  SelfTestResult res;
  auto t0 = std::chrono::steady_clock::now();
  Problem pr;
  // Every kernel family a `device: 'cuda'` run uses; wgmma only where gemm_path() runs it (sm_90).
  std::vector<std::pair<const char*, std::function<std::string()>>> families = {
      {"gemm_mma", [&] { return check_gemm_path(pr, false, "gemm_mma"); }},
      {"gemm_wgmma", [&] { return wgmma_in_use() ? check_gemm_path(pr, true, "gemm_wgmma") : std::string(); }},
      {"matmul", [&] { return check_matmul(pr); }},
      {"encoder", [&] { return check_encoder(pr); }},
      {"encoder_backward", [&] { return check_encoder_backward(pr); }},
      {"decode", [&] { return check_decode(pr, false); }},
      {"decode_backward", [&] { return check_decode(pr, true); }},
      {"adam", [&] { return check_adam(pr); }},
      {"signum", [&] { return check_signum(pr); }},
      {"muon", [&] { return check_muon(pr); }},
      {"grad_clip", [&] { return check_grad_clip(pr); }},
      {"layer_norm", [&] { return check_layer_norm(pr); }},
      {"rms_norm", [&] { return check_rms_norm(pr); }},
      {"rope", [&] { return check_rope(pr); }},
      {"activation", [&] { return check_activation(pr); }},
      {"attention", [&] { return check_attention(pr); }},
      {"gather", [&] { return check_gather(pr); }},
  };
  for (const auto& [name, fn] : families) {
    std::string e;
    try {
      e = fn();
    } catch (const std::exception& ex) {
      e = ex.what();
    }
    if (!e.empty()) {
      res.ok = false;
      res.kernel = name;
      res.error = e;
      break;
    }
  }
  res.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace

const SelfTestResult& self_test() {
  static std::once_flag once;
  static SelfTestResult result;
  std::call_once(once, [] { result = run(); });
  return result;
}

}  // namespace cuda
}  // namespace sparsify
