// A minimal test harness for the emulator's unit tests: every case runs in a forked child, so a
// case that leaves a sticky error cannot affect the next; the parent prints one line per case
// ("ok <name>" or "FAIL <name>: <why>") and exits non-zero if any failed.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "launch.cuh"

namespace emu_test {

struct Case {
  const char* name;
  std::function<void()> fn;
  const char* env;  // optional NAME=value for the child (e.g. the device model)
};
inline std::vector<Case>& cases() {
  static std::vector<Case> c;
  return c;
}
struct Register {
  Register(const char* n, std::function<void()> f, const char* env = nullptr) { cases().push_back({n, std::move(f), env}); }
};

[[noreturn]] inline void fail(const char* file, int line, const std::string& what) {
  fprintf(stderr, "%s:%d: %s\n", file, line, what.c_str());
  fflush(stderr);
  _exit(1);
}

#define EXPECT(cond)                                                    \
  do {                                                                  \
    if (!(cond)) ::emu_test::fail(__FILE__, __LINE__, "expected " #cond); \
  } while (0)
#define EXPECT_EQ(a, b)                                                                                        \
  do {                                                                                                         \
    auto va_ = (a);                                                                                            \
    auto vb_ = (b);                                                                                            \
    if (!(va_ == vb_))                                                                                         \
      ::emu_test::fail(__FILE__, __LINE__, std::string("expected " #a " == " #b ": ") + std::to_string(va_) + \
                                               " vs " + std::to_string(vb_));                                  \
  } while (0)
#define EXPECT_CUDA(expr) EXPECT_EQ(int(expr), int(cudaSuccess))
#define EXPECT_CONTAINS(s, sub) \
  do {                          \
    std::string s_ = (s);       \
    if (s_.find(sub) == std::string::npos) ::emu_test::fail(__FILE__, __LINE__, "\"" + s_ + "\" lacks \"" + (sub) + "\""); \
  } while (0)

inline int run_all(int argc, char** argv) {
  int failed = 0;
  for (const Case& c : cases()) {
    if (argc > 1 && std::strcmp(argv[1], c.name) != 0) continue;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      if (c.env) putenv(const_cast<char*>(c.env));
      c.fn();
      fflush(stdout);
      _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (ok) printf("ok %s\n", c.name);
    else {
      printf("FAIL %s (%s %d)\n", c.name, WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
      ++failed;
    }
  }
  printf("%d failed\n", failed);
  return failed ? 1 : 0;
}

}  // namespace emu_test

#define EMU_CAT2(a, b) a##b
#define EMU_CAT(a, b) EMU_CAT2(a, b)
#define TEST_CASE(name, ...) static ::emu_test::Register EMU_CAT(reg_, __LINE__)(name, __VA_ARGS__)

// Device buffer helpers.
template <class T>
T* dev_alloc(size_t n) {
  void* p = nullptr;
  if (cudaMalloc(&p, n * sizeof(T)) != cudaSuccess) ::emu_test::fail(__FILE__, __LINE__, "cudaMalloc");
  return static_cast<T*>(p);
}
template <class T>
std::vector<T> to_host(const T* d, size_t n) {
  std::vector<T> h(n);
  if (cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost) != cudaSuccess) ::emu_test::fail(__FILE__, __LINE__, "D2H");
  return h;
}
template <class T>
T* to_device(const std::vector<T>& h) {
  T* d = dev_alloc<T>(h.size());
  if (cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice) != cudaSuccess) ::emu_test::fail(__FILE__, __LINE__, "H2D");
  return d;
}
