// Device memory of the emulated device. Every allocation gets its own mapping:
//   [PROT_NONE page][front slack: canary][data: 0xFF (NaN) at allocation][tail slack: canary][PROT_NONE page]
// with the data 256-byte aligned (as cudaMalloc) and ending at most 255 bytes before the guard
// page. A kernel reading or writing past the pages faults at once (the SIGSEGV handler turns it
// into a sticky cudaErrorIllegalAddress naming the kernel); a write into the slack is found by
// the canary check after every kernel.
#include <signal.h>
#include <sys/mman.h>

#include <cstdio>
#include <map>

#include "emu_internal.h"

namespace spx_emu {

namespace {

constexpr size_t PAGE = 4096;
constexpr unsigned char CANARY = 0xA5;

struct Allocation {
  char* map;       // start of the mapping
  size_t map_bytes;
  char* data;
  size_t bytes;
};
std::map<uintptr_t, Allocation> g_allocs;  // by data address

bool canary_ok(const char* p, size_t n, size_t* bad) {
  for (size_t i = 0; i < n; ++i)
    if (static_cast<unsigned char>(p[i]) != CANARY) {
      *bad = i;
      return false;
    }
  return true;
}

const Allocation* find_alloc_near(uintptr_t a) {
  auto it = g_allocs.upper_bound(a);
  if (it != g_allocs.begin()) {
    auto prev = std::prev(it);
    const Allocation& al = prev->second;
    if (a >= uintptr_t(al.map) && a < uintptr_t(al.map + al.map_bytes)) return &al;
  }
  if (it != g_allocs.end()) {
    const Allocation& al = it->second;
    if (a >= uintptr_t(al.map) && a < uintptr_t(al.map + al.map_bytes)) return &al;
  }
  return nullptr;
}

struct sigaction g_old_segv, g_old_bus;

void on_fault(int sig, siginfo_t* info, void* uctx) {
  if (in_kernel()) {
    std::string what = "illegal address " + describe_address(info->si_addr);
    fault_from_signal(what);  // resumes the scheduler; the faulting CUDA thread is abandoned
  }
  struct sigaction& old = sig == SIGSEGV ? g_old_segv : g_old_bus;
  if (old.sa_flags & SA_SIGINFO) {
    if (old.sa_sigaction) return old.sa_sigaction(sig, info, uctx);
  } else if (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN) {
    return old.sa_handler(sig);
  }
  signal(sig, SIG_DFL);  // returning re-executes the access and ends the process as usual
}

}  // namespace

std::mutex& device_mutex() {
  static std::mutex m;
  return m;
}

void install_fault_handler() {
  static bool done = false;
  thread_local bool alt_stack = false;
  if (!alt_stack) {  // the handler must run even when a fiber's stack overflowed
    static const size_t bytes = 64 * 1024;
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
      stack_t ss{};
      ss.ss_sp = p;
      ss.ss_size = bytes;
      sigaltstack(&ss, nullptr);
    }
    alt_stack = true;
  }
  if (done) return;
  struct sigaction sa{};
  sa.sa_sigaction = &on_fault;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &g_old_segv);
  sigaction(SIGBUS, &sa, &g_old_bus);
  done = true;
}

std::string describe_address(const void* p) {
  char b[256];
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (const Allocation* al = find_alloc_near(a)) {
    if (a < uintptr_t(al->data))
      snprintf(b, sizeof b, "%p, %zu bytes before the start of a %zu-byte allocation", p, size_t(uintptr_t(al->data) - a), al->bytes);
    else
      snprintf(b, sizeof b, "%p, %zu bytes past the end of a %zu-byte allocation", p, size_t(a - uintptr_t(al->data) - al->bytes),
               al->bytes);
  } else {
    snprintf(b, sizeof b, "%p (no device allocation there)", p);
  }
  return b;
}

void* device_alloc(size_t bytes) {
  size_t body = (bytes + 255) / 256 * 256;
  size_t pages = (body + PAGE - 1) / PAGE;
  if (pages == 0) pages = 1;
  size_t map_bytes = (pages + 2) * PAGE;
  void* m = mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  char* map = static_cast<char*>(m);
  mprotect(map, PAGE, PROT_NONE);
  mprotect(map + (pages + 1) * PAGE, PAGE, PROT_NONE);
  char* data = map + (pages + 1) * PAGE - body;
  std::memset(map + PAGE, CANARY, size_t(data - (map + PAGE)));
  std::memset(data, 0xff, bytes);  // never-written device memory reads as NaN
  std::memset(data + bytes, CANARY, body - bytes);
  g_allocs[uintptr_t(data)] = Allocation{map, map_bytes, data, bytes};
  return data;
}

bool device_free(void* p) {
  auto it = g_allocs.find(uintptr_t(p));
  if (it == g_allocs.end()) return false;
  munmap(it->second.map, it->second.map_bytes);
  g_allocs.erase(it);
  return true;
}

bool in_allocation(const void* p, size_t bytes) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = g_allocs.upper_bound(a);
  if (it == g_allocs.begin()) return false;
  const Allocation& al = std::prev(it)->second;
  return a >= uintptr_t(al.data) && a + bytes <= uintptr_t(al.data) + al.bytes;
}

bool is_device_pointer(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = g_allocs.upper_bound(a);
  if (it == g_allocs.begin()) return false;
  const Allocation& al = std::prev(it)->second;
  return a >= uintptr_t(al.data) && a <= uintptr_t(al.data) + al.bytes;
}

std::string check_guards() {
  for (auto& [addr, al] : g_allocs) {
    size_t bad = 0;
    char* front = al.map + PAGE;
    if (!canary_ok(front, size_t(al.data - front), &bad)) {
      char b[200];
      snprintf(b, sizeof b, "wrote %zu bytes before the start of a %zu-byte allocation (at %p)", size_t(al.data - front) - bad,
               al.bytes, static_cast<void*>(front + bad));
      return b;
    }
    size_t body = (al.bytes + 255) / 256 * 256;
    if (!canary_ok(al.data + al.bytes, body - al.bytes, &bad)) {
      char b[200];
      snprintf(b, sizeof b, "wrote %zu bytes past the end of a %zu-byte allocation (at %p)", bad, al.bytes,
               static_cast<void*>(al.data + al.bytes + bad));
      return b;
    }
  }
  return "";
}

size_t live_allocations() { return g_allocs.size(); }

}  // namespace spx_emu
