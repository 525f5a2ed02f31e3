// Float64 references of the optimizer updates: the textbook formulas, no torch op ordering.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/optim.h"

namespace sparsify {

void signum_sf_step_ref(int64_t n, double* p, double* z, const double* g, double lr, double momentum, double ckp1) {
  for (int64_t i = 0; i < n; ++i) {
    const double x = p[i] + (1.0 - 1.0 / momentum) * (z[i] - p[i]);
    const double sg = g[i] > 0 ? 1.0 : (g[i] < 0 ? -1.0 : 0.0);
    const double zn = z[i] - lr * sg;
    const double x2 = x + ckp1 * (zn - x);
    p[i] = x2 + (1.0 - momentum) * (zn - x2);
    z[i] = zn;
  }
}

void adam_step_ref(int64_t n, double* p, const double* g, double* m, double* v, double lr, double beta1, double beta2,
                   double eps, int64_t step) {
  for (int64_t i = 0; i < n; ++i) {
    m[i] = beta1 * m[i] + (1 - beta1) * g[i];
    v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
    const double mh = m[i] / (1 - std::pow(beta1, double(step)));
    const double vh = v[i] / (1 - std::pow(beta2, double(step)));
    p[i] -= lr * mh / (std::sqrt(vh) + eps);
  }
}

void muon_step_ref(int64_t rows, int64_t cols, double* p, double* g, double* buf, double lr, double momentum,
                   bool nesterov, double weight_decay, int ns_steps) {
  const int64_t n = rows * cols;
  for (int64_t i = 0; i < n; ++i) {
    p[i] *= 1 - lr * weight_decay;
    buf[i] = momentum * buf[i] + (1 - momentum) * g[i];
    g[i] = nesterov ? (1 - momentum) * g[i] + momentum * buf[i] : buf[i];
  }
  // X = g (or g^T) normalised; X <- a X + (b A + c A^2) X with A = X X^T.
  const bool tr = rows > cols;
  const int64_t r = tr ? cols : rows, c = tr ? rows : cols;
  std::vector<double> X(size_t(r * c));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) X[size_t(tr ? j * c + i : i * c + j)] = g[i * cols + j];
  double ss = 0;
  for (double v : X) ss += v * v;
  for (double& v : X) v /= std::sqrt(ss) + 1e-7;
  const double a = 3.4445, b = -4.7750, cc = 2.0315;
  for (int it = 0; it < ns_steps; ++it) {
    std::vector<double> A(size_t(r * r), 0.0), B(size_t(r * r), 0.0), Xn(size_t(r * c), 0.0);
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < r; ++j)
        for (int64_t t = 0; t < c; ++t) A[size_t(i * r + j)] += X[size_t(i * c + t)] * X[size_t(j * c + t)];
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < r; ++j) {
        double aa = 0;
        for (int64_t t = 0; t < r; ++t) aa += A[size_t(i * r + t)] * A[size_t(t * r + j)];
        B[size_t(i * r + j)] = b * A[size_t(i * r + j)] + cc * aa;
      }
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < c; ++j) {
        double acc = a * X[size_t(i * c + j)];
        for (int64_t t = 0; t < r; ++t) acc += B[size_t(i * r + t)] * X[size_t(t * c + j)];
        Xn[size_t(i * c + j)] = acc;
      }
    X.swap(Xn);
  }
  const double scale = lr * 0.2 * std::sqrt(double(std::max(rows, cols)));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) p[i * cols + j] -= scale * X[size_t(tr ? j * c + i : i * c + j)];
}

}  // namespace sparsify
