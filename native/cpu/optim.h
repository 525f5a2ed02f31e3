// Optimizer updates over flat f32 parameter buffers. One OptUpdate per parameter; the binding
// batches every parameter of every coder into one native call per step.
#pragma once
#include <cstdint>

namespace sparsify {

enum class OptKind { Signum, Adam, Muon };

struct OptUpdate {
  OptKind kind = OptKind::Signum;
  float* p = nullptr;  // parameter [rows, cols] (1-D: rows = 1)
  float* g = nullptr;  // its gradient; zeroed after the update
  float* s0 = nullptr; // signum: z; adam: exp_avg; muon: momentum buffer
  float* s1 = nullptr; // adam: exp_avg_sq
  int64_t rows = 0, cols = 0;
  bool project = false;  // first remove from each gradient row its component along the parameter row
  double lr = 0;
  double momentum = 0.95;  // signum (schedule-free beta), muon
  double ckp1 = 0;         // signum: weight of z in the x average this step
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  int64_t step = 1;        // adam: 1-based step number (bias correction)
  bool nesterov = true;
  double weight_decay = 0;
  int ns_steps = 5;
};

// Projection (optional), update and zeroing of the gradient, row chunk by row chunk so each
// chunk is read once. Element-wise maths follow torch's op order in f32:
//  signum: schedulefree.ScheduleFreeWrapper.step around SignSGD (y -> x, swap x into z's buffer,
//          z -= lr*sign(g), swap back, x = lerp(x, z, ckp1), y = lerp(x, z, 1 - momentum));
//  adam:   torch.optim.Adam (no weight decay, no amsgrad);
//  muon:   sparsify's Muon: p *= 1 - lr*wd; buf = lerp(buf, g, 1-m); g = lerp(g, buf, m) (Nesterov);
//          O = quintic Newton-Schulz(g) in f32 (upstream: bf16); p -= lr*0.2*sqrt(max(r,c))*O.
void optimizer_update(const OptUpdate& u);

// The projection of optimizer_update alone (in place): g[r] -= (g[r]·p[r]) p[r] for every row,
// for callers that need the projected gradient before the update (gradient clipping).
void project_grad(int64_t rows, int64_t cols, const float* p, float* g);
// p = lerp(p, z, weight) (schedule-free eval(): weight = 1 - 1/momentum; train(): 1 - momentum).
void lerp_inplace(int64_t n, float* p, const float* z, float weight);
// Quintic Newton-Schulz orthogonalisation (5 steps as Muon), f32 with the shared GEMM.
void newton_schulz(int64_t rows, int64_t cols, const float* g, int steps, float* out);

// ---- float64 references (native/ref/optim_reference.cpp), on double buffers ----
void signum_sf_step_ref(int64_t n, double* p, double* z, const double* g, double lr, double momentum, double ckp1);
void adam_step_ref(int64_t n, double* p, const double* g, double* m, double* v, double lr, double beta1, double beta2,
                   double eps, int64_t step);
void muon_step_ref(int64_t rows, int64_t cols, double* p, double* g, double* buf, double lr, double momentum,
                   bool nesterov, double weight_decay, int ns_steps);

}  // namespace sparsify
