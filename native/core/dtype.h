// Element types a Tensor can hold, and conversions between the 16-bit float formats and f32.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

namespace sparsify {

enum class DType : int { F32 = 0, BF16 = 1, F16 = 2, I32 = 3 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::I32: return 4;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
    case DType::I32: return "int32";
  }
  return "?";
}

// Returns false when the name is unknown.
inline bool dtype_from_name(const std::string& s, DType* out) {
  if (s == "float32") { *out = DType::F32; return true; }
  if (s == "bfloat16") { *out = DType::BF16; return true; }
  if (s == "float16") { *out = DType::F16; return true; }
  if (s == "int32") { *out = DType::I32; return true; }
  return false;
}

inline bool is_float(DType t) { return t != DType::I32; }

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round-to-nearest-even, NaN kept quiet (same as PyTorch's c10::BFloat16).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

inline float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do { man <<= 1; ++e; } while ((man & 0x400) == 0);
      man &= 0x3ff;
      u = sign | (uint32_t(127 - 15 - e) << 23) | (man << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round-to-nearest-even with overflow to inf and gradual underflow.
inline uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000;
  uint32_t absu = u & 0x7fffffffu;
  if (absu > 0x7f800000u) return uint16_t(sign | 0x7e00);  // NaN
  if (absu >= 0x477ff000u) return uint16_t(sign | 0x7c00);  // overflow (>= 65520) -> inf
  if (absu < 0x38800000u) {                                  // subnormal or zero in f16
    if (absu < 0x33000000u) return uint16_t(sign);           // < 2^-25 rounds to 0
    uint32_t e = absu >> 23;
    uint32_t m = (absu & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - e;  // value = m * 2^(e-150); f16 subnormal unit is 2^-24
    uint32_t res = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (res & 1))) res += 1;
    return uint16_t(sign | res);
  }
  uint32_t e = (absu >> 23) - 127 + 15;
  uint32_t m = absu & 0x7fffff;
  uint32_t res = (e << 10) | (m >> 13);
  uint32_t rem = m & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (res & 1))) res += 1;
  return uint16_t(sign | res);
}

// Reads element i of a float buffer of any float dtype as f32.
inline float load_as_f32(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::I32: return float(static_cast<const int32_t*>(p)[i]);
  }
  return 0.f;
}

}  // namespace sparsify
