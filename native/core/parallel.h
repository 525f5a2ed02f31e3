// A small process-wide thread pool. parallel_for splits [0, n) into chunks of at least `grain`
// items and runs them on all threads (the caller included). Calls from different threads are
// serialised, so kernels may call it from any AsyncWorker; nested calls run inline.
#pragma once
#include <cstdint>
#include <functional>

namespace sparsify {

int num_threads();
void set_num_threads(int n);  // n <= 0: hardware concurrency
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);
// Runs fn(thread_index, num_threads) once on every thread of the pool (for per-thread work splits).
void parallel_threads(const std::function<void(int tid, int nt)>& fn);

}  // namespace sparsify
