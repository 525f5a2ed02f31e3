// Cache sizes from Linux sysfs, or from CPUID's deterministic cache parameters (Intel leaf 4,
// AMD leaf 0x8000001D: same register layout, see the Intel SDM vol. 2A "CPUID" and AMD's APM
// vol. 3 appendix E).
#include "cpu/cache_info.h"

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace sparsify {
namespace {

bool read_line(const std::string& path, std::string& out) {
  std::ifstream f(path);
  return static_cast<bool>(std::getline(f, out));
}

// "32K", "1024K", "32M" or a plain byte count -> bytes; 0 when unparseable.
int64_t parse_size(const std::string& s) {
  size_t i = 0;
  int64_t v = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) v = v * 10 + (s[i++] - '0');
  if (i == 0) return 0;
  char unit = i < s.size() ? char(std::toupper(static_cast<unsigned char>(s[i]))) : '\0';
  if (unit == 'K') v <<= 10;
  else if (unit == 'M') v <<= 20;
  else if (unit == 'G') v <<= 30;
  return v;
}

// Records a data or unified cache of the given level.
void record(CacheSizes& c, int level, int64_t bytes) {
  if (level == 1) c.l1d = bytes;
  else if (level == 2) c.l2 = bytes;
  else if (level == 3) c.l3 = bytes;
}

bool from_sysfs(CacheSizes& c) {
  bool any = false;
  for (int i = 0; i < 16; ++i) {
    std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    std::string level, type, size;
    if (!read_line(dir + "level", level) || !read_line(dir + "type", type) || !read_line(dir + "size", size)) break;
    if (type == "Instruction") continue;
    int64_t bytes = parse_size(size);
    if (bytes <= 0) continue;
    record(c, std::atoi(level.c_str()), bytes);
    any = true;
  }
  return any && c.l1d > 0 && c.l2 > 0;
}

bool from_cpuid(CacheSizes& c) {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, cx, d;
  unsigned max_ext = __get_cpuid_max(0x80000000u, nullptr);
  for (unsigned leaf : {4u, 0x8000001Du}) {
    if (leaf == 4u && __get_cpuid_max(0, nullptr) < 4u) continue;
    if (leaf == 0x8000001Du && max_ext < 0x8000001Du) continue;
    bool any = false;
    for (unsigned sub = 0; sub < 16; ++sub) {
      __cpuid_count(leaf, sub, a, b, cx, d);
      unsigned type = a & 0x1f;  // 0 none, 1 data, 2 instruction, 3 unified
      if (type == 0) break;
      if (type == 2) continue;
      int level = int((a >> 5) & 0x7);
      int64_t ways = ((b >> 22) & 0x3ff) + 1, parts = ((b >> 12) & 0x3ff) + 1, line = (b & 0xfff) + 1;
      int64_t sets = int64_t(cx) + 1;
      record(c, level, ways * parts * line * sets);
      any = true;
    }
    if (any && c.l1d > 0 && c.l2 > 0) return true;
    c = CacheSizes{};
  }
#endif
  (void)c;
  return false;
}

CacheSizes detect() {
  CacheSizes c;
  if (from_sysfs(c)) {
    c.source = "sysfs";
    return c;
  }
  c = CacheSizes{};
  if (from_cpuid(c)) {
    c.source = "cpuid";
    return c;
  }
  c = CacheSizes{};
  c.l1d = 32 << 10, c.l2 = 512 << 10, c.l3 = 32 << 20;
  c.source = "default";
  return c;
}

}  // namespace

const CacheSizes& cache_sizes() {
  static const CacheSizes c = detect();
  return c;
}

}  // namespace sparsify
