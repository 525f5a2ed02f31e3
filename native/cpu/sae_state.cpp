// The CPU resident state of one sparse coder (twin: native/cuda/sae_state.cu). The math is the
// kernels' (sae_encode / sae_decode / sae_backward.cpp, optim.cpp, grad_clip.cpp); this file keeps the state
// and the per-step bookkeeping: micro-batch rows, the batch variance, fired latents, dead latents.
#include "cpu/sae_state.h"

#include <cmath>
#include <cstring>
#include <string>

#include "core/errors.h"
#include "core/parallel.h"
#include "cpu/grad_clip.h"

namespace sparsify {

Tensor& CpuSaeState::grad_of(int i) {
  if (!grad[i].defined()) grad[i] = Tensor::zeros(param[i].shape, DType::F32);
  return grad[i];
}

SaeWeights CpuSaeState::weights() const {
  SaeWeights w;
  w.M = M;
  w.D = D;
  w.W_enc = param[kWEnc].data<float>();
  w.b_enc = param[kBEnc].data<float>();
  w.W_dec = has(kWDec) ? param[kWDec].data<float>() : nullptr;
  w.b_dec = param[kBDec].data<float>();
  w.W_skip = has(kWSkip) ? param[kWSkip].data<float>() : nullptr;
  return w;
}

SaeGrads CpuSaeState::grads() {
  SaeGrads g;
  g.W_enc = grad_of(kWEnc).data<float>();
  g.b_enc = grad_of(kBEnc).data<float>();
  g.W_dec = grad_of(kWDec).data<float>();
  g.b_dec = grad_of(kBDec).data<float>();
  g.W_skip = has(kWSkip) ? grad_of(kWSkip).data<float>() : nullptr;
  return g;
}

std::shared_ptr<CpuSaeState> make_cpu_sae_state(const Tensor (&params)[kSaeParams], bool transcode) {
  auto st = std::make_shared<CpuSaeState>();
  for (int i = 0; i < kSaeParams; ++i) st->param[i] = params[i];
  st->M = params[kWEnc].dim(0);
  st->D = params[kWEnc].dim(1);
  st->transcode = transcode;
  st->fired = Tensor::zeros({st->M}, DType::I32);
  st->since_fired.assign(size_t(st->M), 0.0);
  st->dead.assign(size_t(st->M), 0);
  return st;
}

double total_variance(int64_t N, int64_t D, const float* p) {
  std::vector<double> mean(size_t(D), 0.0), ss(size_t(D), 0.0);
  // Two passes per column block: the mean, then the centred sum of squares (stable).
  parallel_for(D, 16, [&](int64_t b, int64_t e) {
    for (int64_t n = 0; n < N; n++)
      for (int64_t d = b; d < e; d++) mean[size_t(d)] += p[n * D + d];
    for (int64_t d = b; d < e; d++) mean[size_t(d)] /= double(N);
    for (int64_t n = 0; n < N; n++)
      for (int64_t d = b; d < e; d++) {
        double c = p[n * D + d] - mean[size_t(d)];
        ss[size_t(d)] += c * c;
      }
  });
  double t = 0;
  for (double v : ss) t += v;
  return t;
}

namespace {

// The whole batch's variance times the share of rows [r0, r1) in it; one computation per batch
// (the cache holds the batch's storage weakly, so a freed batch never matches a new one).
double rows_variance(CpuSaeState& st, const Tensor& batch, int64_t r0, int64_t r1) {
  const bool same = !st.variance_of.expired() && st.variance_of.lock() == batch.storage &&
                    st.variance_offset == batch.offset && st.variance_shape == batch.shape;
  if (!same) {
    st.variance = total_variance(batch.dim(0), batch.dim(1), batch.data<float>());
    st.variance_of = batch.storage;
    st.variance_offset = batch.offset;
    st.variance_shape = batch.shape;
  }
  return (st.variance * double(r1 - r0)) / double(batch.dim(0));
}

void expect_writable(const Tensor& t, const char* name) {
  if (t.defined() && t.storage && !t.storage->owned_heap)
    throw NativeError(ErrorKind::Value,
                      std::string(name) + " is read-only (memory-mapped from a file); clone it before writing to it");
}

}  // namespace

SaeStepOut sae_state_step(CpuSaeState& st, const Tensor& x_all, const Tensor& y_all, const SaeStepCall& call) {
  if (!st.has(kWDec)) throw NativeError(ErrorKind::Value, "this coder has no decoder (loaded with decoder: false)");
  Tensor x = x_all, y = y_all;
  double tv = call.total_variance;
  if (call.has_rows) {
    // A micro-batch is a view of rows [begin, end): no copy.
    if (!(tv > 0) && call.batch_variance)
      tv = rows_variance(st, y_all.defined() ? y_all : x_all, call.row_begin, call.row_end);
    x = x_all.rows(call.row_begin, call.row_end);
    if (y.defined()) y = y_all.rows(call.row_begin, call.row_end);
  }
  check_finite(x.data<float>(), x.numel(), "x");
  if (y.defined()) check_finite(y.data<float>(), y.numel(), "y");
  if (call.normalize_decoder) {
    expect_writable(st.param[kWDec], "W_dec");
    sae_normalize_decoder(st.M, st.D, st.param[kWDec].data<float>());
  }
  const int64_t N = x.dim(0), kr = call.spec.multi_topk ? 4 * call.spec.k : call.spec.k;
  SaeStepOut out;
  SaeStepArgs a;
  a.N = N;
  a.x = x.data<float>();
  a.y = y.defined() ? y.data<float>() : nullptr;
  a.dead = call.dead_from_counters ? st.dead.data() : call.dead_mask ? call.dead_mask->data() : nullptr;
  a.auxk_alpha = call.auxk_alpha;
  a.loss_scale = call.loss_scale;
  a.total_variance = tv;
  a.did_fire = call.track_fired ? st.fired.data<int32_t>() : call.did_fire.defined() ? call.did_fire.data<int32_t>() : nullptr;
  if (call.outputs) {
    out.sae_out = Tensor::empty({N, st.D}, DType::F32);
    out.latent_acts = Tensor::empty({N, kr}, DType::F32);
    out.latent_idx = Tensor::empty({N, kr}, DType::I32);
    a.sae_out = out.sae_out.data<float>();
    a.latent_acts = out.latent_acts.data<float>();
    a.latent_idx = out.latent_idx.data<int32_t>();
  }
  SaeGrads g;
  if (call.backward) g = st.grads();
  out.losses = sae_forward_backward(st.weights(), call.spec, a, call.backward ? &g : nullptr);
  return out;
}

// SAELens's clip_grad_norm_ over every gradient of the state. The W_dec projection (sparsify's
// order: projection, then the optimizer) is done first, so the norm is that of what is applied.
static double clip_state_grads(CpuSaeState& st, bool project, double max_norm) {
  if (project) project_grad(st.M, st.D, st.param[kWDec].data<float>(), st.grad_of(kWDec).data<float>());
  double ss = 0;
  for (int i = 0; i < kSaeParams; ++i)
    if (st.has(i)) ss += grad_sum_squares(st.param[i].numel(), st.grad_of(i).data<float>());
  const double norm = std::sqrt(ss);
  const double coef = grad_clip_coefficient(norm, max_norm);
  if (coef < 1.0)
    for (int i = 0; i < kSaeParams; ++i)
      if (st.has(i)) grad_scale(st.param[i].numel(), st.grad_of(i).data<float>(), float(coef));
  return norm;
}

double sae_state_optimize(CpuSaeState& st, const SaeOptimCall& c) {
  for (int i = 0; i < kSaeParams; ++i)
    if (st.has(i)) expect_writable(st.param[i], "param");
  for (Tensor* slot : {st.m, st.v, st.z})
    for (int i = 0; i < kSaeParams; ++i) expect_writable(slot[i], "optimizer state");
  const bool clip = c.max_grad_norm > 0;
  const double norm = clip ? clip_state_grads(st, c.project, c.max_grad_norm) : -1.0;
  for (int i = 0; i < kSaeParams; ++i) {
    if (!st.has(i)) continue;
    const Tensor& p = st.param[i];
    auto zeros = [&](Tensor& t) {
      if (!t.defined()) t = Tensor::zeros(p.shape, DType::F32);
      return t.data<float>();
    };
    OptUpdate u;
    u.p = p.data<float>();
    u.g = st.grad_of(i).data<float>();
    u.rows = p.ndim() == 2 ? p.dim(0) : 1;
    u.cols = p.ndim() == 2 ? p.dim(1) : p.numel();
    u.project = c.project && i == kWDec && !clip;  // clipping projected it already
    u.lr = c.lr;
    u.momentum = c.momentum;
    u.ckp1 = c.ckp1;
    u.beta1 = c.beta1;
    u.beta2 = c.beta2;
    u.eps = c.eps;
    u.step = c.step;
    u.nesterov = c.nesterov;
    u.weight_decay = c.weight_decay;
    u.ns_steps = c.ns_steps;
    if (c.kind == OptKind::Signum) {
      // z starts as a copy of the parameters (y), as schedule-free does.
      if (!st.z[i].defined()) st.z[i] = p.clone();
      u.kind = OptKind::Signum;
      u.s0 = st.z[i].data<float>();
    } else if (c.kind == OptKind::Muon && p.ndim() >= 2) {
      u.kind = OptKind::Muon;
      u.s0 = zeros(st.m[i]);
    } else {
      u.kind = OptKind::Adam;
      if (c.kind == OptKind::Muon) u.lr = c.vector_lr;  // the Adam half of Muon
      u.s0 = zeros(st.m[i]);
      u.s1 = zeros(st.v[i]);
    }
    optimizer_update(u);
  }
  return norm;
}

void sae_state_lerp_z(CpuSaeState& st, float weight) {
  for (int i = 0; i < kSaeParams; ++i)
    if (st.has(i) && st.z[i].defined()) {
      expect_writable(st.param[i], "param");
      lerp_inplace(st.param[i].numel(), st.param[i].data<float>(), st.z[i].data<float>(), weight);
    }
}

void sae_state_zero_grads(CpuSaeState& st) {
  for (Tensor& g : st.grad)
    if (g.defined()) std::memset(g.raw(), 0, g.nbytes());
}

namespace {
void refresh_dead(CpuSaeState& st) {
  st.num_dead = 0;
  for (int64_t m = 0; m < st.M; ++m) {
    st.dead[size_t(m)] = st.since_fired[size_t(m)] > st.dead_threshold ? 1 : 0;
    st.num_dead += st.dead[size_t(m)];
  }
}
}  // namespace

int64_t sae_state_update_dead(CpuSaeState& st, double tokens) {
  int32_t* f = st.fired.data<int32_t>();
  for (int64_t m = 0; m < st.M; ++m) {
    double& c = st.since_fired[size_t(m)];
    c = f[m] ? 0.0 : c + tokens;
    f[m] = 0;
  }
  refresh_dead(st);
  return st.num_dead;
}

void sae_state_load_dead(CpuSaeState& st, const std::vector<double>& counts, double threshold) {
  if (!counts.empty() && int64_t(counts.size()) != st.M)
    throw NativeError(ErrorKind::Shape, "dead-latent counters have " + std::to_string(counts.size()) +
                                            " entries, expected num_latents=" + std::to_string(st.M));
  if (counts.empty())
    st.since_fired.assign(size_t(st.M), 0.0);
  else
    st.since_fired = counts;
  st.dead_threshold = threshold;
  refresh_dead(st);
}

}  // namespace sparsify
