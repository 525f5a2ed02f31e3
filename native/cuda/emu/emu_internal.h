// Internal state shared by the emulator's translation units.
#pragma once
#include <cstdarg>
#include <mutex>
#include <string>
#include <vector>

#include "emu_device.h"

namespace spx_emu {

// Fiber context switch (emu_fiber.cpp): saves the callee-saved state on the current stack,
// stores the stack pointer in *save and resumes the context whose stack pointer is `to`.
extern "C" void spx_emu_switch(void** save, void* to);
void* fiber_init(void* stack_top, void (*entry)(void*), void* arg);

struct PendingCopy {
  uint32_t dst;
  const void* src;
  int size;
};

enum class ThreadState { Runnable, AtBarrier, InCollective, Done };

struct Collective;

struct ThreadCtx {
  uint3 tid;
  int linear = 0, lane = 0, warp = 0;
  void* sp = nullptr;
  char* stack_top = nullptr;
  ThreadState state = ThreadState::Runnable;
  void* barrier_site = nullptr;
  // collective participation: what this thread brought, where its result goes
  Collective* coll = nullptr;
  const void* coll_in = nullptr;
  void* coll_out = nullptr;
  // cp.async: copies not yet committed, and committed groups oldest first
  std::vector<PendingCopy> open_copies;
  std::vector<std::vector<PendingCopy>> copy_groups;
  int wgmma_pending = 0;  // committed wgmma groups not yet waited for
};

using CompleteFn = void (*)(Collective&);
struct Collective {
  const char* what;     // for messages: "__shfl_xor_sync", "ldmatrix", ...
  CompleteFn complete;  // runs once every member arrived
  int scope;            // 0: warp, 1: warpgroup
  int scope_id;
  unsigned mask;        // warp scope: the member lanes
  std::vector<ThreadCtx*> members;  // by arrival
  int expected;
};

// Waits (as the running CUDA thread) in a collective of the given scope until every member
// arrived; then `complete` has run and the thread's coll_out holds its result.
void collective(const char* what, CompleteFn complete, int scope, unsigned mask, const void* in, void* out);

// Performs the copies of a cp.async group (source read and destination written now).
void land_copies(std::vector<PendingCopy>& group);

// Device memory (emu_memory.cpp)
std::mutex& device_mutex();
bool in_allocation(const void* p, size_t bytes);
std::string check_guards();  // "" or a description of the first overwritten guard zone
std::string describe_address(const void* p);
void install_fault_handler();

// Errors (emu_runtime.cpp)
void set_sticky(cudaError_t e, const std::string& msg);
cudaError_t sticky_error();
void set_last_error(cudaError_t e);

// The running launch (emu_exec.cpp)
const char* current_kernel();
bool in_kernel();
[[noreturn]] void fault_from_signal(const std::string& msg);

struct DeviceModel {
  const char* arch;  // "sm_90" or "sm_80"
  int major, minor, sms;
  size_t smem_optin;
};
const DeviceModel& device_model();

}  // namespace spx_emu
