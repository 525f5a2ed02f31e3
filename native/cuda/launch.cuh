// The one way kernels are launched and dynamic shared memory is declared, so the same sources
// build for a GPU (nvcc) and for the emulated device (host C++ compiler, native/cuda/emu):
//   SPX_LAUNCH(grid, block, smem_bytes, stream, kernel)(args...);
//   SPX_DYNAMIC_SHARED(type, name, alignment);   // extern __shared__ __align__(alignment) type name[]
// The kernel comes last because a template-id (kernel<T, BM>) contains commas.
#pragma once

#ifdef SPARSIFY_CUDA_EMU
#define SPX_LAUNCH(grid, block, smem, stream, ...) \
  ::spx_emu::launcher(#__VA_ARGS__, __VA_ARGS__, grid, block, smem, stream)
#define SPX_DYNAMIC_SHARED(T, name, align) T* const name = static_cast<T*>(::spx_emu::dynamic_shared())
#else
#define SPX_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
#define SPX_DYNAMIC_SHARED(T, name, align) extern __shared__ __align__(align) T name[]
#endif
