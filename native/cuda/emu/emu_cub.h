// cub::DeviceRadixSort::SortPairs for the emulated device: a stable sort of (key, value) pairs by
// the key bits [begin_bit, end_bit), keys compared as cub orders them (unsigned; signed integers
// with the sign bit flipped), equal keys keeping their input order — cub's documented guarantee.
// The temporary-storage protocol is cub's: a null d_temp_storage only asks for the size.
#pragma once
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <type_traits>
#include <vector>

#include "emu_runtime.h"

namespace spx_emu {
bool device_range_ok(const void* p, size_t bytes);
}

namespace cub {

struct DeviceRadixSort {
  template <class K, class V, class N>
  static cudaError_t SortPairs(void* d_temp_storage, size_t& temp_storage_bytes, const K* keys_in, K* keys_out,
                               const V* values_in, V* values_out, N num_items, int begin_bit = 0,
                               int end_bit = int(sizeof(K) * 8), cudaStream_t = nullptr, bool = false) {
    static_assert(std::is_integral<K>::value, "the emulated SortPairs sorts integer keys");
    using U = std::make_unsigned_t<K>;
    if (!d_temp_storage) {
      temp_storage_bytes = 256;
      return cudaSuccess;
    }
    const size_t n = size_t(num_items);
    if (temp_storage_bytes < 256 || !spx_emu::device_range_ok(d_temp_storage, 256) ||
        !spx_emu::device_range_ok(keys_in, n * sizeof(K)) || !spx_emu::device_range_ok(keys_out, n * sizeof(K)) ||
        !spx_emu::device_range_ok(values_in, n * sizeof(V)) || !spx_emu::device_range_ok(values_out, n * sizeof(V)) ||
        begin_bit < 0 || end_bit > int(sizeof(K) * 8) || begin_bit > end_bit)
      return cudaErrorInvalidValue;
    auto digits = [&](K k) -> U {
      U u = U(k);
      if (std::is_signed<K>::value) u ^= U(U(1) << (sizeof(K) * 8 - 1));
      int w = end_bit - begin_bit;
      U mask = w >= int(sizeof(U) * 8) ? U(~U(0)) : U((U(1) << w) - 1);
      return U((u >> begin_bit) & mask);
    };
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t(0));
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return digits(keys_in[a]) < digits(keys_in[b]); });
    std::vector<K> k(n);
    std::vector<V> v(n);
    for (size_t i = 0; i < n; ++i) k[i] = keys_in[order[i]], v[i] = values_in[order[i]];
    std::copy(k.begin(), k.end(), keys_out);
    std::copy(v.begin(), v.end(), values_out);
    return cudaSuccess;
  }
};

}  // namespace cub
