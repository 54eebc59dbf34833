// ptrace: seizing and stopping tasks, their register sets, and syscalls run
// inside a stopped task ("remote syscalls").
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/sys/proc.h"
#include "core/sys/result.h"

namespace cryo::ptrace {

// PTRACE_SEIZE + PTRACE_INTERRUPT and wait until the task sits in a ptrace
// stop. A signal that arrives first is delivered before the stop.
// A timeout_ms >= 0 bounds the wait for the stop.
Status seize_and_stop(pid_t tid, unsigned options, int timeout_ms = -1);
Status seize(pid_t tid, unsigned options);
Status interrupt_and_wait(pid_t tid, int timeout_ms = -1);
// The two halves of interrupt_and_wait, for tasks asked to stop while they
// cannot run (a frozen cgroup) and collected once they can.
Status interrupt(pid_t tid);
Status wait_interrupt_stop(pid_t tid, int timeout_ms = -1);
Status detach(pid_t tid, int signal = 0);

Result<user_regs_struct> get_regs(pid_t tid);
Status set_regs(pid_t tid, const user_regs_struct& regs);
Result<std::string> get_xstate(pid_t tid);
Status set_xstate(pid_t tid, const std::string& xstate);
Result<uint64_t> get_sigmask(pid_t tid);
Status set_sigmask(pid_t tid, uint64_t mask);
// The siginfo_t of every pending signal (per thread, or of the whole process).
Result<std::vector<std::string>> peek_pending(pid_t tid, bool shared);

struct RseqConfig {
  uint64_t addr = 0;
  uint32_t len = 0;
  uint32_t signature = 0;
  uint32_t flags = 0;
};
Result<RseqConfig> get_rseq(pid_t tid);

// A thread's syscall user dispatch (prctl PR_SET_SYSCALL_USER_DISPATCH,
// Linux 5.11; read and set by its tracer from Linux 6.3): mode 0 is off. On,
// its syscalls from outside [offset, offset + len) raise SIGSYS unless the
// byte at selector (none: always) says SYSCALL_DISPATCH_FILTER_ALLOW.
struct SyscallDispatch {
  uint64_t mode = 0;
  uint64_t selector = 0;
  uint64_t offset = 0;
  uint64_t len = 0;
};
Result<SyscallDispatch> get_syscall_dispatch(pid_t tid);
Status set_syscall_dispatch(pid_t tid, const SyscallDispatch& sud);

// Interrupted syscalls: rewrites registers stopped with rax = -ERESTART* so
// that the task re-runs the syscall when it resumes (see DESIGN.md).
user_regs_struct normalize_restart(user_regs_struct regs);

// Runs syscalls inside a stopped task: the task executes the `syscall`
// instruction found at syscall_ip, between a syscall-entry and a
// syscall-exit stop (the task must be seized with PTRACE_O_TRACESYSGOOD).
// Signals must be blocked by the caller (set_sigmask) so none is delivered.
// How a Remote waits for its syscall. kSyscallStops: PTRACE_SYSCALL's entry
// and exit stops, two round trips. kSingleStep: PTRACE_SINGLESTEP over the
// `syscall` instruction, one round trip; but the task keeps the trap flag
// until cryo next resumes or detaches it, and should cryo die meanwhile the
// task dies of the SIGTRAP. So only for tasks that die with cryo anyway
// (a restore's, seized with PTRACE_O_EXITKILL), never for a dump's, which
// must live on (rescue.h).
enum class Stepping { kSyscallStops, kSingleStep };

// One syscall of a batch (Remote::batch); name is for errors.
struct Call {
  const char* name;
  long nr;
  std::array<uint64_t, 6> args;
};

// The code a batch runs in the task, placed in its memory by the caller (the
// restore trampoline): rbx points at a table of kBatchEntryBytes per call
// (nr, six arguments, the result), r12 holds the number of calls. It runs them
// in order, writes each result into its entry, stops at the first that fails
// and ends on an int3 (its last byte), r12 then counting the calls not done.
inline constexpr size_t kBatchEntryBytes = 64;
extern const std::array<uint8_t, 56> kBatchLoop;

class Remote {
 public:
  Remote(pid_t tid, uint64_t syscall_ip, const user_regs_struct& base, Stepping stepping = Stepping::kSyscallStops)
      : tid_(tid), syscall_ip_(syscall_ip), base_(base), stepping_(stepping) {}

  pid_t tid() const { return tid_; }
  // Raw return value: a negative errno on failure.
  Result<long> raw(long nr, std::array<uint64_t, 6> args = {});
  // The same, turning a negative result into an Error naming the syscall.
  Result<long> call(const char* name, long nr, std::array<uint64_t, 6> args = {});
  // Runs calls in order and returns their results, failing (as call() does)
  // on the first that fails, the later ones not run. A kSingleStep remote
  // runs them in one round trip each table_bytes / kBatchEntryBytes calls:
  // the task runs kBatchLoop, found at loop_ip, over a table written at table,
  // freely (PTRACE_CONT) between two stops, where a remote syscall costs two
  // ptrace stops or one step (each a round trip through the scheduler, most
  // of what restoring a small process's 30-odd mappings took). Others (a
  // dump's task, which must outlive cryo) run them one by one.
  Result<std::vector<long>> batch(uint64_t loop_ip, uint64_t table, size_t table_bytes, const std::vector<Call>& calls);

 private:
  Status step_to_syscall_stop();
  Result<user_regs_struct> step_over_syscall();
  Result<user_regs_struct> resume_until(int request, uint64_t stop_ip, const char* what);
  pid_t tid_;
  uint64_t syscall_ip_;
  user_regs_struct base_;
  Stepping stepping_;
};

// Stop signals (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU) that came up while a
// Remote ran a syscall in a task: Remote holds them back rather than let the
// task stop mid-syscall; whoever lets the task go raises them again. Returns
// (thread group id, signal) pairs and forgets them.
std::vector<std::pair<pid_t, int>> take_deferred_stops();

// A `syscall` instruction in the task's vDSO: running it changes no memory.
Result<uint64_t> find_syscall_insn(pid_t pid, const std::vector<proc::MapEntry>& maps);

// Reads and writes another task's memory.
Status read_memory(pid_t pid, uint64_t addr, void* out, size_t size);
Status write_memory(pid_t pid, uint64_t addr, const void* data, size_t size);

}  // namespace cryo::ptrace
