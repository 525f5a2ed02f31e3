// The k rules of a sparse coder with M latents, for every kernel and binding on both devices
// (@sparsify/core's coderSpecProblem states the same rules for a config before any call):
// k in [1, M], and at most max_k where a backend has a limit (0: none); M divisible by k for
// groupmax; 4k <= M (and <= max_k) for multi_topk. `backend` ends the messages (" on the CUDA backend").
#pragma once
#include <cstdint>
#include <string>

#include "core/errors.h"

namespace sparsify {

inline void check_coder_spec(int64_t M, int64_t k, bool groupmax, bool multi_topk, int64_t max_k = 0, const char* backend = "") {
  const std::string Ms = std::to_string(M);
  const std::string limit = max_k ? "min(num_latents=" + Ms + ", " + std::to_string(max_k) + ")" : "num_latents=" + Ms;
  if (k < 1 || k > M || (max_k && k > max_k))
    fail(ErrorKind::Value, "k must be in [1, " + limit + "]" + backend + ", got " + std::to_string(k));
  if (groupmax && M % k != 0)
    fail(ErrorKind::Value, "groupmax needs num_latents (" + Ms + ") divisible by k (" + std::to_string(k) + ")");
  if (multi_topk && (4 * k > M || (max_k && 4 * k > max_k)))
    fail(ErrorKind::Value, "multi_topk needs 4*k (" + std::to_string(4 * k) + ") <= " + (max_k ? limit : "num_latents (" + Ms + ")") + backend);
}

}  // namespace sparsify
