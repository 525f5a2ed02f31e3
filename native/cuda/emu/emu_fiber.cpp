// Fibers for the emulated CUDA threads: a hand-written context switch (x86-64 System V: the
// callee-saved general registers; MXCSR and the x87 control word are left alone — no CUDA thread
// changes them, and ldmxcsr/fldcw would dominate the switch) and a ucontext-free stack set-up.
#include "emu_internal.h"

#if !defined(__x86_64__)
#error "the emulated CUDA device needs x86-64 (emu_fiber.cpp)"
#endif

asm(R"(
.text
.globl spx_emu_switch
.type spx_emu_switch,@function
spx_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size spx_emu_switch,.-spx_emu_switch

.globl spx_emu_fiber_start
.type spx_emu_fiber_start,@function
spx_emu_fiber_start:
  movq %r12, %rdi
  andq $-16, %rsp
  callq *%r13
  ud2
.size spx_emu_fiber_start,.-spx_emu_fiber_start
)");

extern "C" void spx_emu_fiber_start();

namespace spx_emu {

// Builds the frame spx_emu_switch pops: r15..r12 (r13 = entry, r12 = arg), rbx, rbp, and the
// return address spx_emu_fiber_start.
void* fiber_init(void* stack_top, void (*entry)(void*), void* arg) {
  auto* sp = reinterpret_cast<uint64_t*>(reinterpret_cast<uintptr_t>(stack_top) & ~uintptr_t(15));
  *--sp = 0;  // keeps the start routine's stack 16-byte aligned after the final ret
  *--sp = reinterpret_cast<uint64_t>(&spx_emu_fiber_start);
  *--sp = 0;                                    // rbp
  *--sp = 0;                                    // rbx
  *--sp = reinterpret_cast<uint64_t>(arg);      // r12
  *--sp = reinterpret_cast<uint64_t>(entry);    // r13
  *--sp = 0;                                    // r14
  *--sp = 0;                                    // r15
  return sp;
}

}  // namespace spx_emu
