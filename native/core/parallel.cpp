#include "core/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace sparsify {
namespace {

thread_local bool in_pool_task = false;

class Pool {
 public:
  explicit Pool(int n) { resize(n); }
  ~Pool() { stop_workers(); }

  // Without submit_mu_, which a running job holds: a task that asks for the size must not wait on
  // its own job. Inside a task the answer is 1, like the nested runs it would start.
  int size() const { return in_pool_task ? 1 : threads_.load(std::memory_order_acquire); }

  void resize(int n) {
    // A task's own job holds submit_mu_: resizing from inside it could never proceed.
    if (in_pool_task) throw std::logic_error("set_num_threads called inside a parallel task");
    std::lock_guard<std::mutex> lk(submit_mu_);
    stop_workers();
    stop_ = false;
    // Each worker starts from the generation current now (submit_mu_ is held, so no job can
    // start in between); reading it inside the thread could skip a job posted before the
    // thread first ran, and run() would then wait forever.
    uint64_t gen;
    {
      std::lock_guard<std::mutex> g(mu_);
      gen = generation_;
    }
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i, gen] { loop(i, gen); });
    threads_.store(n < 1 ? 1 : n, std::memory_order_release);
  }

  // Runs task(tid, nt) on every thread and waits.
  void run(const std::function<void(int, int)>& task) {
    if (in_pool_task) {  // nested: run inline as a single thread
      task(0, 1);
      return;
    }
    std::lock_guard<std::mutex> submit(submit_mu_);
    int nt = int(workers_.size()) + 1;
    {
      std::lock_guard<std::mutex> lk(mu_);
      task_ = &task;
      pending_ = nt - 1;
      ++generation_;
    }
    cv_.notify_all();
    in_pool_task = true;
    guarded(task, 0, nt);
    in_pool_task = false;
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return pending_ == 0; });
    task_ = nullptr;
    if (error_) {  // an exception on any thread is rethrown on the caller's thread
      std::exception_ptr e = error_;
      error_ = nullptr;
      std::rethrow_exception(e);
    }
  }

 private:
  void loop(int tid, uint64_t seen) {
    for (;;) {
      const std::function<void(int, int)>* task;
      int nt;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        task = task_;
        nt = int(workers_.size()) + 1;
      }
      in_pool_task = true;
      guarded(*task, tid, nt);
      in_pool_task = false;
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (--pending_ == 0) done_cv_.notify_one();
      }
    }
  }

  void guarded(const std::function<void(int, int)>& task, int tid, int nt) {
    try {
      task(tid, nt);
    } catch (...) {
      std::lock_guard<std::mutex> lk(mu_);
      if (!error_) error_ = std::current_exception();
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::mutex submit_mu_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  std::atomic<int> threads_{1};
  const std::function<void(int, int)>* task_ = nullptr;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

int default_threads() {
  unsigned h = std::thread::hardware_concurrency();
  return h == 0 ? 1 : int(h);
}

Pool& pool() {
  static Pool* p = new Pool(default_threads());  // leaked on purpose: no join at static destruction
  return *p;
}

}  // namespace

int num_threads() { return pool().size(); }

void set_num_threads(int n) { pool().resize(n <= 0 ? default_threads() : std::min(n, 256)); }

void parallel_threads(const std::function<void(int, int)>& fn) { pool().run(fn); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  if (n <= grain || in_pool_task) {
    fn(0, n);
    return;
  }
  int nt = num_threads();
  int64_t chunks = std::min<int64_t>((n + grain - 1) / grain, int64_t(nt) * 4);
  if (chunks <= 1 || nt == 1) {
    fn(0, n);
    return;
  }
  std::atomic<int64_t> next{0};
  pool().run([&](int, int) {
    for (;;) {
      int64_t c = next.fetch_add(1);
      if (c >= chunks) break;
      int64_t b = n * c / chunks, e = n * (c + 1) / chunks;
      if (b < e) fn(b, e);
    }
  });
}

}  // namespace sparsify
