// Rescue frames: what keeps a thread whole while cryo runs syscalls inside it
// (ptrace::Remote) and cryo dies at that instant.
//
// Before cryo changes a thread's registers or signal mask, it writes below
// the thread's stack pointer (past the red zone, where the kernel itself
// would put a signal frame) an rt_sigreturn frame holding the thread's own
// registers, FPU state and mask. Every register state cryo then gives the
// thread runs a `syscall` instruction of the vDSO whose next instructions end
// in `ret`, with rsp and rbp pointing into that area so that the `ret` lands
// on a "mov $15, %eax; syscall" (rt_sigreturn) found in the task's own code.
// If cryo dies, the kernel lets the thread go; at most it finishes cryo's
// syscall (a query: nothing that changes it), then rt_sigreturn gives it back
// everything, and it goes on as if nothing happened (an interrupted syscall
// re-runs). Nothing is left to undo but bytes below the stack pointer.
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/sys/proc.h"
#include "core/sys/result.h"

namespace cryo::ptrace {

// How a process's threads are rescued; one per process.
struct RescuePlan {
  uint64_t syscall_ip = 0;    // a `syscall` in the vDSO followed by code that ends in `ret`
  int64_t ret_slot = 0;       // with rsp = rbp = B at that syscall, the `ret` reads [B + ret_slot]
  int64_t lowest_read = 0;    // and nothing below B + lowest_read is read on the way
  uint64_t sigreturn_ip = 0;  // "mov $15, %eax|%rax; syscall" in the task's code
};

// Finds the pieces in the process's vDSO and code. Fails (and the caller
// goes without rescue) when the vDSO has no suitable `syscall` or no code of
// the task calls rt_sigreturn.
Result<RescuePlan> plan_rescue(pid_t pid, const std::vector<proc::MapEntry>& maps);

// The pure part of plan_rescue, for unit tests: where `ret` reads if the
// code at `after` (the bytes right after a `syscall`) runs with rsp = rbp =
// 0; false if it holds anything but leave, pop, xor, add/lea to rsp, ret.
bool emulate_return(const uint8_t* after, size_t size, int64_t* ret_slot, int64_t* lowest_read);

struct RescueArea {
  user_regs_struct resting;  // registers that send the thread to rt_sigreturn
  uint64_t scratch = 0;      // kScratchSize bytes the thread's syscalls may write
  uint64_t lowest = 0;       // the lowest byte of the area (what lies below is still free)
};
constexpr size_t kScratchSize = 256;

// Writes the frame for thread tid (stopped, with registers regs, mask and
// xstate as read by ptrace) below its stack pointer. Fails when the stack
// pointer is not in a stack whose room cryo can vouch for (the main stack,
// or a thread stack above its guard page): a goroutine stack, say. Such a
// thread may borrow room lent by another thread of its process: `lent_sp`,
// an address in that thread's stack far below its own stack pointer
// (kLentDistance), where nothing is written but by a deep call.
Result<RescueArea> place_rescue(pid_t tid, const RescuePlan& plan, const std::vector<proc::MapEntry>& maps,
                                const user_regs_struct& regs, uint64_t mask, const std::string& xstate,
                                uint64_t lent_sp = 0);
constexpr uint64_t kLentDistance = 64 * 1024;
// The room a thread with stack pointer sp can lend (0: none it can vouch for).
uint64_t lendable_sp(const std::vector<proc::MapEntry>& maps, uint64_t sp);

// The bytes of the frame (exposed for unit tests): `frame_at` is where it
// starts, `fpstate_at` (64-byte aligned) where the xstate goes.
std::string sigreturn_frame(const user_regs_struct& regs, uint64_t mask, uint64_t pretcode, uint64_t fpstate_at);

}  // namespace cryo::ptrace
