// Float64 reference of global gradient-norm clipping (torch.nn.utils.clip_grad_norm_ with the
// L2 norm): the textbook formula over every buffer.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/grad_clip.h"

namespace sparsify {

double clip_grad_norm_ref(std::vector<std::vector<double>>& grads, double max_norm) {
  double ss = 0;
  for (const auto& g : grads)
    for (double v : g) ss += v * v;
  const double norm = std::sqrt(ss);
  const double coef = std::min(1.0, max_norm / (norm + 1e-6));
  for (auto& g : grads)
    for (double& v : g) v *= coef;
  return norm;
}

}  // namespace sparsify
