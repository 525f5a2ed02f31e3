// The instruction set of the CPU kernels that come in several variants (GEMM, sparse decode, the
// fused encoder's TopK and AuxK scans, the optimizer updates, the forward's vector math): the one of
// the GEMM's kernel set, so SPARSIFY_GEMM and
// gemm_force_kernels pin all of them together (tests run each variant the CPU supports).
#pragma once

namespace sparsify {

enum class Isa { Portable, Avx2, Avx512 };

// Throws the Value error of an unusable $SPARSIFY_GEMM, like gemm().
Isa active_isa();

}  // namespace sparsify
