// Data cache sizes of the CPU this process runs on, for choosing the GEMM's cache blocking.
#pragma once
#include <cstdint>

namespace sparsify {

struct CacheSizes {
  int64_t l1d = 0;    // bytes, per core
  int64_t l2 = 0;     // bytes, per core
  int64_t l3 = 0;     // bytes, the whole L3 that cpu0 sits on (0 when there is none)
  const char* source = "default";  // "sysfs", "cpuid" or "default" (neither could be read: Zen 3 sizes)
};

// Read once: sysfs (/sys/devices/system/cpu/cpu0/cache/index*), else CPUID (leaf 4, or AMD's
// 0x8000001D), else 32 KiB / 512 KiB / 32 MiB.
const CacheSizes& cache_sizes();

}  // namespace sparsify
