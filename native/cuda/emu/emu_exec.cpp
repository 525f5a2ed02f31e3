// The execution model of the emulated device: blocks run one after another on the launching OS
// thread; inside a block every CUDA thread is a fiber, run until it waits at a barrier or in a
// collective (round robin in the order they became ready). Undefined behaviour that the
// emulator can see ends the kernel with a sticky error naming the kernel, block and thread.
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "emu_internal.h"

// The linker defines these around the section; the anchor makes sure the section exists.
extern "C" char __start_spx_emu_shared[];
extern "C" char __stop_spx_emu_shared[];
__attribute__((section("spx_emu_shared"), used)) static char g_shared_section_anchor;

namespace spx_emu {

ThreadCtx* g_thread = nullptr;
LaunchState g_launch;

namespace {

constexpr size_t STACK_BYTES = 256 * 1024, PAGE = 4096;
constexpr uint32_t STATIC_SHARED_BASE = 0x40000;  // shared addresses of static __shared__ data
constexpr size_t DYN_REGION = 232448 + 1024;      // >= the largest opt-in limit (sm_90: 227 KB)

struct Run {
  const char* name = nullptr;
  Thunk thunk = nullptr;
  void* closure = nullptr;
  int nthreads = 0;
  std::vector<ThreadCtx> threads;
  std::vector<int> ready;
  size_t ready_head = 0;
  void* sched_sp = nullptr;
  bool failed = false;
  cudaError_t code = cudaSuccess;
  std::string msg;
  int barrier_arrived = 0;
  std::vector<Collective*> open;
  std::vector<Collective*> spare;  // finished collectives, reused (no allocation per shuffle)
  ~Run() {
    for (Collective* c : open) delete c;
    for (Collective* c : spare) delete c;
  }
};
Run* g_run = nullptr;
pthread_t g_kernel_os_thread;  // the OS thread running g_run

std::vector<char*> g_stacks;
char* g_dyn_region = nullptr;  // DYN_REGION bytes (rounded to pages), then a PROT_NONE page
char* g_dyn_base = nullptr;
size_t g_dyn_mapped = 0;
std::map<const void*, int> g_func_smem;  // cudaFuncAttributeMaxDynamicSharedMemorySize

char* stack_top(int i) {
  while (int(g_stacks.size()) <= i) {
    void* p = mmap(nullptr, STACK_BYTES + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) return nullptr;
    mprotect(p, PAGE, PROT_NONE);  // overflow guard
    g_stacks.push_back(static_cast<char*>(p));
  }
  // Staggered tops: stacks a multiple of the page size apart would put every fiber's hot frames
  // in the same L1 sets.
  return g_stacks[size_t(i)] + PAGE + STACK_BYTES - size_t(i % 32) * 128;
}

char* dyn_region_end() {
  static const size_t bytes = (DYN_REGION + PAGE - 1) / PAGE * PAGE;
  if (!g_dyn_region) {
    void* p = mmap(nullptr, bytes + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    g_dyn_region = static_cast<char*>(p);
    mprotect(g_dyn_region + bytes, PAGE, PROT_NONE);
  }
  return g_dyn_region + bytes;
}

size_t static_shared_bytes() {
  return size_t(__stop_spx_emu_shared - __start_spx_emu_shared);
}

std::string where(const ThreadCtx* t) {
  char b[160];
  const uint3& bi = g_launch.block_idx;
  if (t)
    snprintf(b, sizeof b, "block (%u,%u,%u) thread (%u,%u,%u)", bi.x, bi.y, bi.z, t->tid.x, t->tid.y, t->tid.z);
  else
    snprintf(b, sizeof b, "block (%u,%u,%u)", bi.x, bi.y, bi.z);
  return b;
}

[[noreturn]] void abandon_thread() {
  ThreadCtx* t = g_thread;
  spx_emu_switch(&t->sp, g_run->sched_sp);
  __builtin_trap();  // a failed kernel's fibers are never resumed
}

void thread_main(void* p) {
  auto* t = static_cast<ThreadCtx*>(p);
  g_run->thunk(g_run->closure);
  // Copies still in flight at exit land anyway (nobody can read them any more).
  for (auto& g : t->copy_groups) land_copies(g);
  land_copies(t->open_copies);
  t->state = ThreadState::Done;
  spx_emu_switch(&t->sp, g_run->sched_sp);
  __builtin_trap();
}

void make_ready(ThreadCtx* t) {
  t->state = ThreadState::Runnable;
  g_run->ready.push_back(t->linear);
}

void yield_blocked() { spx_emu_switch(&g_thread->sp, g_run->sched_sp); }

std::string state_name(const ThreadCtx& t) {
  switch (t.state) {
    case ThreadState::Done: return "had exited";
    case ThreadState::AtBarrier: return "waits at __syncthreads()";
    case ThreadState::InCollective: {
      char m[16];
      snprintf(m, sizeof m, "0x%08x", t.coll ? t.coll->mask : 0u);
      return std::string("waits in ") + (t.coll ? t.coll->what : "a collective") + (t.coll && t.coll->scope == 0 ? std::string(" with mask ") + m : "");
    }
    default: return "is runnable";
  }
}

// Nothing can run but the block has not finished: a barrier or collective some threads never reach.
void diagnose_deadlock() {
  Run& r = *g_run;
  std::string msg;
  auto at_barrier = std::count_if(r.threads.begin(), r.threads.end(),
                                  [](const ThreadCtx& t) { return t.state == ThreadState::AtBarrier; });
  if (at_barrier > 0) {
    for (const ThreadCtx& t : r.threads)
      if (t.state != ThreadState::AtBarrier) {
        msg = "__syncthreads() not reached by every thread of " + where(nullptr) + ": " + std::to_string(at_barrier) +
              " of " + std::to_string(r.nthreads) + " threads wait there, thread (" + std::to_string(t.tid.x) + "," +
              std::to_string(t.tid.y) + "," + std::to_string(t.tid.z) + ") " + state_name(t);
        break;
      }
  } else if (!r.open.empty()) {
    const Collective& c = *r.open.front();
    const ThreadCtx* first = c.members.front();
    std::string missing;
    if (c.scope == 0) {
      unsigned arrived = 0;
      for (const ThreadCtx* m : c.members) arrived |= 1u << m->lane;
      for (int l = 0; l < 32; ++l)
        if (((c.mask & ~arrived) >> l) & 1u) {
          int lin = c.scope_id * 32 + l;
          missing = "lane " + std::to_string(l) + " " +
                    (lin >= r.nthreads ? std::string("does not exist (the block has ") + std::to_string(r.nthreads) + " threads)"
                                       : state_name(r.threads[size_t(lin)]));
          break;
        }
      char mask[16];
      snprintf(mask, sizeof mask, "0x%08x", c.mask);
      msg = std::string(c.what) + " with mask " + mask + " in warp " + std::to_string(c.scope_id) + " of " +
            where(nullptr) + ": " + missing;
    } else {
      for (int i = 0; i < 128; ++i) {
        int lin = c.scope_id * 128 + i;
        bool in = std::any_of(c.members.begin(), c.members.end(), [&](const ThreadCtx* m) { return m->linear == lin; });
        if (!in) {
          missing = "thread " + std::to_string(lin) + " " +
                    (lin >= r.nthreads ? std::string("does not exist") : state_name(r.threads[size_t(lin)]));
          break;
        }
      }
      msg = std::string(c.what) + " in warpgroup " + std::to_string(c.scope_id) + " of " + where(nullptr) + ": " + missing;
    }
    (void)first;
  } else {
    msg = "the block stopped with no runnable thread";
  }
  r.failed = true;
  r.code = cudaErrorLaunchFailure;
  r.msg = msg;
}

void run_block() {
  Run& r = *g_run;
  r.ready.clear();
  r.ready_head = 0;
  r.barrier_arrived = 0;
  for (int i = 0; i < r.nthreads; ++i) {
    ThreadCtx& t = r.threads[size_t(i)];
    t = ThreadCtx{};
    t.linear = i;
    t.tid = uint3{unsigned(i) % g_launch.block.x, (unsigned(i) / g_launch.block.x) % g_launch.block.y,
                  unsigned(i) / (g_launch.block.x * g_launch.block.y)};
    t.lane = i & 31;
    t.warp = i >> 5;
    t.sp = fiber_init(stack_top(i), &thread_main, &t);
    r.ready.push_back(i);
  }
  while (!r.failed) {
    if (r.ready_head == r.ready.size()) {
      r.ready.clear();
      r.ready_head = 0;
      bool done = std::all_of(r.threads.begin(), r.threads.end(),
                              [](const ThreadCtx& t) { return t.state == ThreadState::Done; });
      if (!done) diagnose_deadlock();
      break;
    }
    ThreadCtx& t = r.threads[size_t(r.ready[r.ready_head++])];
    g_thread = &t;
    spx_emu_switch(&r.sched_sp, t.sp);
    g_thread = nullptr;
  }
  r.spare.insert(r.spare.end(), r.open.begin(), r.open.end());
  r.open.clear();
}

void complete_shfl(Collective& c);
void complete_ballot(Collective& c);
void complete_nothing(Collective&) {}

struct ShflIn {
  uint64_t bits;
  int arg, width, mode;
};

const char* shfl_name(int mode) {
  static const char* names[] = {"__shfl_sync", "__shfl_xor_sync", "__shfl_down_sync", "__shfl_up_sync"};
  return names[mode & 3];
}

void complete_shfl(Collective& c) {
  const ThreadCtx* lanes[32] = {};
  for (const ThreadCtx* m : c.members) lanes[m->lane] = m;
  for (ThreadCtx* m : c.members) {
    auto* in = static_cast<const ShflIn*>(m->coll_in);
    int l = m->lane, w = in->width, seg = l & ~(w - 1), src = l;
    switch (in->mode) {
      case 0: src = seg + (in->arg & (w - 1)); break;
      case 1: src = l ^ in->arg; if ((src & ~(w - 1)) != seg || src > 31 || src < 0) src = l; break;
      case 2: src = l + in->arg; if (src >= seg + w) src = l; break;
      default: src = l - in->arg; if (src < seg) src = l; break;
    }
    if (!lanes[src]) {
      g_thread = m;
      kernel_fault(cudaErrorLaunchFailure, "%s: lane %d reads lane %d, which is not in the mask 0x%08x", shfl_name(in->mode),
                   l, src, c.mask);
    }
    *static_cast<uint64_t*>(m->coll_out) = static_cast<const ShflIn*>(lanes[src]->coll_in)->bits;
  }
}

void complete_ballot(Collective& c) {
  unsigned v = 0;
  for (const ThreadCtx* m : c.members)
    if (*static_cast<const bool*>(m->coll_in)) v |= 1u << m->lane;
  for (ThreadCtx* m : c.members) *static_cast<unsigned*>(m->coll_out) = v;
}

}  // namespace

void land_copies(std::vector<PendingCopy>& group) {
  for (const PendingCopy& c : group) {
    char* dst = static_cast<char*>(shared_ptr(c.dst, 16));
    if (c.size > 0) std::memcpy(dst, c.src, size_t(c.size));
    std::memset(dst + c.size, 0, size_t(16 - c.size));
  }
  group.clear();
}

const uint3& thread_idx() { return g_thread->tid; }
const char* current_kernel() { return g_run ? g_run->name : nullptr; }
bool in_kernel() { return g_run != nullptr && g_thread != nullptr && pthread_equal(pthread_self(), g_kernel_os_thread); }

void kernel_fault(cudaError_t code, const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (!g_run || !g_thread) {
    fprintf(stderr, "[spx-emu] device code outside a kernel: %s\n", buf);
    abort();
  }
  g_run->failed = true;
  g_run->code = code;
  g_run->msg = where(g_thread) + ": " + buf;
  abandon_thread();
}

void fault_from_signal(const std::string& msg) {
  g_run->failed = true;
  g_run->code = cudaErrorIllegalAddress;
  g_run->msg = where(g_thread) + ": " + msg;
  abandon_thread();
}

void syncthreads(void*) {
  Run& r = *g_run;
  ThreadCtx* t = g_thread;
  t->state = ThreadState::AtBarrier;
  if (++r.barrier_arrived == r.nthreads) {
    r.barrier_arrived = 0;
    for (ThreadCtx& o : r.threads)
      if (&o != t && o.state == ThreadState::AtBarrier) make_ready(&o);
    t->state = ThreadState::Runnable;
    return;
  }
  yield_blocked();
}

void collective(const char* what, CompleteFn complete, int scope, unsigned mask, const void* in, void* out) {
  Run& r = *g_run;
  ThreadCtx* t = g_thread;
  int id = scope == 0 ? t->warp : t->linear / 128;
  if (scope == 0 && !((mask >> t->lane) & 1u))
    kernel_fault(cudaErrorLaunchFailure, "%s: lane %d passes the mask 0x%08x, which leaves itself out", what, t->lane, mask);
  Collective* c = nullptr;
  for (Collective* o : r.open)
    if (o->scope == scope && o->scope_id == id && o->mask == mask) {
      c = o;
      break;
    }
  if (c) {
    if (c->complete != complete)
      kernel_fault(cudaErrorLaunchFailure, "lane %d of warp %d reaches %s while other lanes wait in %s", t->lane, t->warp,
                   what, c->what);
  } else {
    if (r.spare.empty()) {
      c = new Collective{};
      c->members.reserve(128);
    } else {
      c = r.spare.back();
      r.spare.pop_back();
      c->members.clear();
    }
    c->what = what;
    c->complete = complete;
    c->scope = scope;
    c->scope_id = id;
    c->mask = mask;
    c->expected = scope == 0 ? __builtin_popcount(mask) : 128;
    r.open.push_back(c);
  }
  t->coll = c;
  t->coll_in = in;
  t->coll_out = out;
  c->members.push_back(t);
  if (int(c->members.size()) == c->expected) {
    r.open.erase(std::find(r.open.begin(), r.open.end(), c));
    c->complete(*c);
    g_thread = t;
    for (ThreadCtx* m : c->members) {
      m->coll = nullptr;
      if (m != t) make_ready(m);
    }
    r.spare.push_back(c);
    return;
  }
  t->state = ThreadState::InCollective;
  yield_blocked();
}

void syncwarp(unsigned mask) { collective("__syncwarp", &complete_nothing, 0, mask, nullptr, nullptr); }

unsigned ballot(unsigned mask, bool pred) {
  unsigned out = 0;
  collective("__ballot_sync", &complete_ballot, 0, mask, &pred, &out);
  return out;
}

uint64_t shfl_bits(unsigned mask, uint64_t bits, int arg, int width, int mode) {
  if (width < 1 || width > 32 || (width & (width - 1)))
    kernel_fault(cudaErrorLaunchFailure, "%s: width %d is not a power of two in [1, 32]", shfl_name(mode), width);
  ShflIn in{bits, arg, width, mode};
  uint64_t out = 0;
  collective(shfl_name(mode), &complete_shfl, 0, mask, &in, &out);
  return out;
}

void* dynamic_shared() { return g_dyn_base; }

uint32_t generic_to_shared(const void* p) {
  auto* c = static_cast<const char*>(p);
  if (g_dyn_base && c >= g_dyn_base && c <= g_dyn_base + g_dyn_mapped) return uint32_t(c - g_dyn_base);
  size_t sb = static_shared_bytes();
  if (sb && c >= __start_spx_emu_shared && c < __stop_spx_emu_shared)
    return STATIC_SHARED_BASE + uint32_t(c - __start_spx_emu_shared);
  kernel_fault(cudaErrorInvalidAddressSpace, "__cvta_generic_to_shared of %p, which is not shared memory", p);
}

void* shared_ptr(uint32_t addr, size_t bytes) {
  if (uint64_t(addr) + bytes <= g_launch.dynamic_smem) return g_dyn_base + addr;
  size_t sb = static_shared_bytes();
  if (addr >= STATIC_SHARED_BASE && uint64_t(addr - STATIC_SHARED_BASE) + bytes <= sb)
    return __start_spx_emu_shared + (addr - STATIC_SHARED_BASE);
  kernel_fault(cudaErrorIllegalAddress,
               "shared-memory access of %zu bytes at shared address 0x%x is outside the block's shared memory "
               "(%zu bytes of dynamic shared memory)",
               bytes, addr, g_launch.dynamic_smem);
}

ThreadCtx* current_thread_checked() { return g_thread; }

cudaError_t set_func_max_dynamic_smem(const void* fn, int bytes) {
  std::lock_guard<std::mutex> lock(device_mutex());
  if (bytes < 0 || size_t(bytes) > device_model().smem_optin) return cudaErrorInvalidValue;
  g_func_smem[fn] = bytes;
  return cudaSuccess;
}

void launch_kernel(const char* name, const void* fn, dim3 grid, dim3 block, size_t smem, cudaStream_t,
                   Thunk thunk, void* closure) {
  std::lock_guard<std::mutex> lock(device_mutex());
  if (sticky_error() != cudaSuccess) return;
  uint64_t nthreads = uint64_t(block.x) * block.y * block.z;
  if (nthreads == 0 || nthreads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64 || grid.x == 0 ||
      grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) {
    set_last_error(cudaErrorInvalidConfiguration);
    return;
  }
  size_t limit = 48 * 1024;
  auto it = g_func_smem.find(fn);
  if (it != g_func_smem.end()) limit = std::max<size_t>(limit, size_t(it->second));
  if (smem > limit) {
    set_last_error(cudaErrorInvalidValue);
    return;
  }
  install_fault_handler();
  char* end = dyn_region_end();
  Run r;
  r.name = name;
  r.thunk = thunk;
  r.closure = closure;
  r.nthreads = int(nthreads);
  r.threads.resize(size_t(nthreads));
  if (!end || !stack_top(int(nthreads) - 1)) {
    set_last_error(cudaErrorLaunchOutOfResources);
    return;
  }
  g_dyn_mapped = (smem + 1023) / 1024 * 1024;
  g_dyn_base = end - g_dyn_mapped;
  g_launch.grid = grid;
  g_launch.block = block;
  g_launch.dynamic_smem = smem;
  g_kernel_os_thread = pthread_self();
  g_run = &r;
  for (unsigned z = 0; z < grid.z && !r.failed; ++z)
    for (unsigned y = 0; y < grid.y && !r.failed; ++y)
      for (unsigned x = 0; x < grid.x && !r.failed; ++x) {
        g_launch.block_idx = uint3{x, y, z};
        std::memset(g_dyn_base, 0xff, g_dyn_mapped);  // unwritten shared memory reads as NaN
        if (size_t sb = static_shared_bytes()) std::memset(__start_spx_emu_shared, 0xff, sb);
        run_block();
      }
  g_run = nullptr;
  if (!r.failed) {
    std::string g = check_guards();
    if (!g.empty()) {
      r.failed = true;
      r.code = cudaErrorIllegalAddress;
      r.msg = g;
    }
  }
  if (r.failed) {
    std::string msg = std::string("kernel ") + name + ": " + r.msg;
    fprintf(stderr, "[spx-emu] %s\n", msg.c_str());
    set_sticky(r.code, msg);
  }
}

}  // namespace spx_emu
