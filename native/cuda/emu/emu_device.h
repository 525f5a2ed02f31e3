// Device-side C++ of the emulated CUDA device: the keywords, the built-in indices, barriers, warp
// collectives, atomics, intrinsics and the kernel launcher. Every CUDA thread of a block runs as
// a fiber on the launching OS thread (emu_exec.cpp); blocks run one after another. A lane missing
// from a collective, a __syncthreads not reached by every thread, an out-of-bounds access, ... end
// the kernel with a sticky error whose message names the kernel (see README.md).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#include "emu_half.h"
#include "emu_runtime.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// Static shared memory: one copy per process (blocks run one at a time), in a section the
// launcher fills with 0xFF (NaN) at the start of every block. GCC ignores the section of a static
// in a template instantiation: those still work, but start zeroed instead of NaN-filled.
#define __shared__ static __attribute__((section("spx_emu_shared")))

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) float2 {
  float x, y;
};
struct alignas(8) int2 {
  int x, y;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }

constexpr int warpSize = 32;

namespace spx_emu {

struct ThreadCtx;
struct LaunchState {
  dim3 grid, block;
  uint3 block_idx;
  size_t dynamic_smem;
};
extern ThreadCtx* g_thread;  // the running CUDA thread (valid inside a kernel only)
extern LaunchState g_launch;
const uint3& thread_idx();

// Ends the running kernel with a sticky error (never returns to the kernel).
[[noreturn]] void kernel_fault(cudaError_t code, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

void syncthreads(void* site);
void syncwarp(unsigned mask);
unsigned ballot(unsigned mask, bool pred);
uint64_t shfl_bits(unsigned mask, uint64_t bits, int arg, int width, int mode);  // mode 0 idx 1 xor 2 down 3 up
void* dynamic_shared();
uint32_t generic_to_shared(const void* p);
void* shared_ptr(uint32_t addr, size_t bytes);  // checked: inside the block's shared memory

template <class T>
T shfl_as(unsigned mask, T v, int arg, int width, int mode) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shfl of a type wider than 64 bits");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  b = shfl_bits(mask, b, arg, width, mode);
  T r;
  std::memcpy(&r, &b, sizeof(T));
  return r;
}

// A kernel launch: the arguments are converted to the kernel's parameter types, as a real launch
// copies them; the launcher then runs every block (emu_exec.cpp).
using Thunk = void (*)(void* closure);
void launch_kernel(const char* name, const void* fn, dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                   Thunk thunk, void* closure);

template <class... P>
struct Launcher {
  const char* name;
  void (*fn)(P...);
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  template <class... A>
  void operator()(A&&... a) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    struct Closure {
      void (*fn)(P...);
      std::tuple<std::decay_t<P>...> args;
    } c{fn, std::tuple<std::decay_t<P>...>(std::forward<A>(a)...)};
    launch_kernel(name, reinterpret_cast<const void*>(fn), grid, block, smem, stream,
                  [](void* p) {
                    auto* cl = static_cast<Closure*>(p);
                    auto args = cl->args;  // each CUDA thread gets its own copy of the parameters
                    std::apply(cl->fn, args);
                  },
                  &c);
  }
};
template <class... P>
Launcher<P...> launcher(const char* name, void (*fn)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s) {
  return Launcher<P...>{name, fn, grid, block, smem, s};
}

}  // namespace spx_emu

#define threadIdx (::spx_emu::thread_idx())
#define blockIdx (::spx_emu::g_launch.block_idx)
#define blockDim (::spx_emu::g_launch.block)
#define gridDim (::spx_emu::g_launch.grid)

#define __syncthreads() ::spx_emu::syncthreads(nullptr)
inline void __syncwarp(unsigned mask = 0xffffffffu) { spx_emu::syncwarp(mask); }
inline unsigned __ballot_sync(unsigned mask, int pred) { return spx_emu::ballot(mask, pred != 0); }
template <class T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32) { return spx_emu::shfl_as(mask, v, src, width, 0); }
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) { return spx_emu::shfl_as(mask, v, lane_mask, width, 1); }
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) { return spx_emu::shfl_as(mask, v, int(delta), width, 2); }
template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) { return spx_emu::shfl_as(mask, v, int(delta), width, 3); }
inline void __threadfence() {}
inline void __threadfence_block() {}

// Atomics: the CUDA threads of a launch run on one OS thread and switch only at barriers and
// collectives, so a read-modify-write is atomic.
template <class T>
T atomicAdd(T* p, T v) { T old = *p; *p = old + v; return old; }
template <class T>
T atomicSub(T* p, T v) { T old = *p; *p = old - v; return old; }
template <class T>
T atomicMax(T* p, T v) { T old = *p; if (v > old) *p = v; return old; }
template <class T>
T atomicMin(T* p, T v) { T old = *p; if (v < old) *p = v; return old; }
template <class T>
T atomicExch(T* p, T v) { T old = *p; *p = v; return old; }
template <class T>
T atomicCAS(T* p, T cmp, T v) { T old = *p; if (old == cmp) *p = v; return old; }
template <class T>
T atomicOr(T* p, T v) { T old = *p; *p = old | v; return old; }
template <class T>
T atomicAnd(T* p, T v) { T old = *p; *p = old & v; return old; }

// Intrinsics. The _rn arithmetic is plain IEEE float arithmetic: the emulated build compiles with
// -ffp-contract=off, so nothing is fused behind the kernels' back.
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline float __expf(float a) { return std::exp(a); }
inline float __logf(float a) { return std::log(a); }
inline float __sinf(float a) { return std::sin(a); }
inline float __cosf(float a) { return std::cos(a); }
inline float __tanhf(float a) { return std::tanh(a); }
inline float __saturatef(float a) { return a < 0.f ? 0.f : (a > 1.f ? 1.f : (a != a ? 0.f : a)); }
inline float rsqrtf(float a) { return 1.0f / std::sqrt(a); }
inline unsigned __float_as_uint(float f) { return spx_emu::f32_bits(f); }
inline int __float_as_int(float f) { return int(spx_emu::f32_bits(f)); }
inline float __uint_as_float(unsigned u) { return spx_emu::bits_f32(u); }
inline float __int_as_float(int i) { return spx_emu::bits_f32(unsigned(i)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(unsigned(x)); }
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
// CUDA's global min/max overloads (integers and floats of any mix, as the common type).
template <class A, class B, class = std::enable_if_t<std::is_arithmetic<A>::value && std::is_arithmetic<B>::value>>
inline std::common_type_t<A, B> min(A a, B b) {
  using C = std::common_type_t<A, B>;
  return C(b) < C(a) ? C(b) : C(a);
}
template <class A, class B, class = std::enable_if_t<std::is_arithmetic<A>::value && std::is_arithmetic<B>::value>>
inline std::common_type_t<A, B> max(A a, B b) {
  using C = std::common_type_t<A, B>;
  return C(a) < C(b) ? C(b) : C(a);
}
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }
inline size_t __cvta_generic_to_shared(const void* p) { return spx_emu::generic_to_shared(p); }
