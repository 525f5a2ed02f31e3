// Row gather on the CPU, parallel over output rows (see row_gather.h).
#include "cpu/row_gather.h"

#include <algorithm>

#include "core/parallel.h"

namespace sparsify {

Tensor gather_rows(const Tensor& x, const Tensor& idx) {
  const int64_t D = x.dim(1), n = idx.dim(0);
  Tensor out = Tensor::empty({n, D}, DType::F32);
  const float* src = x.data<float>();
  const int32_t* ip = idx.data<int32_t>();
  float* dst = out.data<float>();
  parallel_for(n, 64, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) std::copy(src + ip[i] * D, src + (ip[i] + 1) * D, dst + i * D);
  });
  return out;
}

}  // namespace sparsify
