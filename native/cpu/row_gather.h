// Row gather: out[r] = x[idx[r]] (the trainer's exclude_tokens masking). CPU twin of
// native/cuda/row_gather.cu; the bindings check the arguments (bindings/row_gather_args.h).
#pragma once
#include "core/tensor.h"

namespace sparsify {

// x host f32 [N,D], idx host int32 [n] with every entry in [0, N). Returns a new [n,D] tensor.
Tensor gather_rows(const Tensor& x, const Tensor& idx);

}  // namespace sparsify
