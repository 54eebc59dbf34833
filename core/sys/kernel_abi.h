// Kernel structures glibc does not expose in the form the raw syscalls take.
#pragma once

#include <sys/ioctl.h>

#include <cstdint>

namespace cryo::abi {

// How deep pid namespaces nest (the kernel's MAX_PID_NS_LEVEL).
constexpr int kMaxPidNsLevels = 32;

// struct sigaction as rt_sigaction(2) reads and writes it on x86_64.
struct KernelSigaction {
  uint64_t handler, flags, restorer, mask;
};

// struct clone_args of clone3(2), up to set_tid and cgroup (CLONE_ARGS_SIZE_VER2).
struct CloneArgs {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

// struct sigevent as timer_create(2) reads it (the SIGEV_THREAD_ID form).
struct KernelSigevent {
  uint64_t value;
  int32_t signo, notify, tid;
  int32_t pad[11];
};
static_assert(sizeof(KernelSigevent) == 64);

// prctl: timer_create takes the timer id from *created_timer_id (Linux 6.17).
inline constexpr int kPrTimerCreateRestoreIds = 77;

// <linux/timerfd.h> has it but clashes with glibc's <fcntl.h>.
inline constexpr unsigned long kTimerfdSetTicks = _IOW('T', 0, uint64_t);

// membarrier(2): MEMBARRIER_CMD_GET_REGISTRATIONS (Linux 6.3, newer than
// Debian's headers) answers with the REGISTER_* commands run in the mm:
// GLOBAL_EXPEDITED, PRIVATE_EXPEDITED, its SYNC_CORE and RSEQ flavours.
inline constexpr uint64_t kMembarrierGetRegistrations = 1 << 9;
inline constexpr uint32_t kMembarrierRegisterCommands = (1 << 2) | (1 << 4) | (1 << 6) | (1 << 8);

// sched_getattr(2)/sched_setattr(2)'s struct sched_attr (SCHED_ATTR_SIZE_VER1):
// <linux/sched/types.h> has it, with a struct sched_param that clashes with glibc's.
struct SchedAttr {
  uint32_t size, policy;
  uint64_t flags;
  int32_t nice;
  uint32_t priority;
  uint64_t runtime, deadline, period;  // SCHED_DEADLINE, in ns
  uint32_t util_min, util_max;
};
static_assert(sizeof(SchedAttr) == 56);
// The sched_flags a SCHED_DEADLINE task keeps: SCHED_FLAG_RESET_ON_FORK, _RECLAIM, _DL_OVERRUN.
inline constexpr uint64_t kSchedDeadlineFlags = 0x01 | 0x02 | 0x04;

// get_mempolicy/set_mempolicy/mbind: the nodes a policy's mask may name
// (MAX_NUMNODES at its largest on x86-64), the mask's bytes.
inline constexpr uint64_t kMaxPolicyNodes = 1024;
inline constexpr size_t kPolicyMaskBytes = kMaxPolicyNodes / 8;

// prctl: memory-deny-write-execute (Linux 6.3; PR_MDWE_* flags) and KSM
// merging of all of a process's memory (Linux 6.4), newer than Debian's headers.
inline constexpr int kPrSetMdwe = 65;
inline constexpr int kPrGetMdwe = 66;
inline constexpr int kPrSetMemoryMerge = 67;

}  // namespace cryo::abi
