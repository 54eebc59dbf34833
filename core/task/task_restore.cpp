#include "core/task/task_restore.h"
#include "core/files/locks.h"
#include "core/files/proc_files.h"
#include "core/sys/io.h"
#include "core/sys/kernel_abi.h"
#include "core/sys/proc.h"

#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/ioprio.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace cryo::task {
namespace {

// A Remote on one stopped thread, with every signal blocked (a restored
// thread, which dies with cryo: it may be single-stepped).
Result<ptrace::Remote> remote_on(pid_t tid, const mm::Trampoline& tramp) {
  CRYO_TRY(ptrace::set_sigmask(tid, ~0ULL));
  CRYO_ASSIGN(user_regs_struct regs, ptrace::get_regs(tid));
  return ptrace::Remote(tid, tramp.code, regs, ptrace::Stepping::kSingleStep);
}

template <typename T>
Status put(pid_t pid, uint64_t addr, const T& value) {
  return ptrace::write_memory(pid, addr, &value, sizeof value);
}

template <typename T>
Result<T> get(pid_t pid, uint64_t addr) {
  T value{};
  CRYO_TRY(ptrace::read_memory(pid, addr, &value, sizeof value));
  return value;
}

// Policy, priority, nice, CPU affinity and I/O priority: set from outside, as root may.
Status restore_scheduling(pid_t tid, const image::Scheduling& s) {
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  auto* words = reinterpret_cast<uint64_t*>(&cpus);
  for (int i = 0; i < s.affinity_size() && static_cast<size_t>(i) < sizeof cpus / 8; i++) words[i] = s.affinity(i);
  if (s.affinity_size() > 0 && ::sched_setaffinity(tid, sizeof cpus, &cpus) < 0)
    return errno_error("sched_setaffinity (are the recorded CPUs present here?)");
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), s.nice()) < 0) return errno_error("setpriority");
  if (!s.has_deadline()) {  // (SCHED_DEADLINE: restore_deadline, last)
    struct sched_param param{};
    param.sched_priority = s.priority();
    if (::sched_setscheduler(tid, s.policy(), &param) < 0) return errno_error("sched_setscheduler");
  }
  if (s.ioprio() && ::syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, tid, s.ioprio()) < 0)
    return errno_error("ioprio_set to class " + std::to_string(s.ioprio() >> IOPRIO_CLASS_SHIFT) + " level " +
                       std::to_string(s.ioprio() & IOPRIO_PRIO_MASK));
  return {};
}

// SCHED_DEADLINE, set once cryo runs no more syscalls in the thread: they
// would spend its runtime, and a small one would stall the restore.
Status restore_deadline(pid_t tid, const image::Deadline& dl) {
  abi::SchedAttr attr{};
  attr.size = sizeof attr;
  attr.policy = SCHED_DEADLINE;
  attr.flags = dl.flags() & abi::kSchedDeadlineFlags;
  attr.runtime = dl.runtime_ns();
  attr.deadline = dl.deadline_ns();
  attr.period = dl.period_ns();
  if (::syscall(SYS_sched_setattr, tid, &attr, 0) < 0)
    return errno_error("sched_setattr (SCHED_DEADLINE, runtime/deadline/period " + std::to_string(dl.runtime_ns()) +
                       "/" + std::to_string(dl.deadline_ns()) + "/" + std::to_string(dl.period_ns()) + " ns)");
  return {};
}

// A NUMA memory policy's mask, written at d for set_mempolicy or mbind.
Status put_policy_mask(pid_t pid, uint64_t d, const image::MemPolicy& policy) {
  std::array<uint64_t, abi::kPolicyMaskBytes / 8> mask{};
  if (static_cast<size_t>(policy.nodes_size()) > mask.size())
    return Error(EINVAL, "a memory policy names more than " + std::to_string(abi::kMaxPolicyNodes) + " NUMA nodes");
  std::copy(policy.nodes().begin(), policy.nodes().end(), mask.begin());
  return ptrace::write_memory(pid, d, mask.data(), sizeof mask);
}

std::string nodes_text(const image::MemPolicy& policy) {
  std::string out;
  for (int word = 0; word < policy.nodes_size(); word++)
    for (int bit = 0; bit < 64; bit++)
      if (policy.nodes(word) >> bit & 1) out += (out.empty() ? "" : ",") + std::to_string(word * 64 + bit);
  return out.empty() ? "none" : out;
}

Status restore_thread(pid_t pid, pid_t tid, const mm::Trampoline& tramp, const image::ThreadState& t) {
  CRYO_ASSIGN(ptrace::Remote r, remote_on(tid, tramp));
  uint64_t d = tramp.data;
  if (t.has_scheduling()) CRYO_TRY(restore_scheduling(tid, t.scheduling()));
  if (t.has_mempolicy()) {
    CRYO_TRY(put_policy_mask(pid, d, t.mempolicy()));
    CRYO_TRY(r.call("set_mempolicy", SYS_set_mempolicy, {t.mempolicy().mode(), d, abi::kMaxPolicyNodes})
                 .wrap("NUMA policy " + std::to_string(t.mempolicy().mode()) + " of nodes " + nodes_text(t.mempolicy()) +
                       " (are they present here?)"));
  }
  CRYO_TRY(r.call("set_tid_address", SYS_set_tid_address, {t.clear_child_tid()}));
  if (t.robust_list())
    CRYO_TRY(r.call("set_robust_list", SYS_set_robust_list, {t.robust_list(), t.robust_list_len()}));
  if (t.has_rseq() && t.rseq().addr())
    CRYO_TRY(r.call("rseq", SYS_rseq, {t.rseq().addr(), t.rseq().len(), 0, t.rseq().signature()}));
  // Always set, a disabled one too: the stub inherited the restorer's own
  // alternate stack (ASan installs one), which is not mapped in the restored
  // process, and an SA_ONSTACK handler would die of SIGSEGV on delivery.
  stack_t ss{nullptr, SS_DISABLE, 0};
  if (t.has_altstack() && !(t.altstack().flags() & SS_DISABLE))
    ss = {reinterpret_cast<void*>(t.altstack().sp()), static_cast<int>(t.altstack().flags()), t.altstack().size()};
  CRYO_TRY(put(pid, d, ss));
  CRYO_TRY(r.call("sigaltstack", SYS_sigaltstack, {d, 0}));
  char comm[16] = {};
  std::strncpy(comm, t.comm().c_str(), sizeof comm - 1);
  CRYO_TRY(put(pid, d, comm));
  CRYO_TRY(r.call("prctl(PR_SET_NAME)", SYS_prctl, {PR_SET_NAME, d}));
  if (t.timer_slack_ns())
    CRYO_TRY(r.call("prctl(PR_SET_TIMERSLACK)", SYS_prctl, {PR_SET_TIMERSLACK, t.timer_slack_ns()}));
  // Drop what the stub had pending, then queue what the thread had.
  uint64_t all = ~0ULL;
  struct timespec zero = {0, 0};
  CRYO_TRY(put(pid, d, all));
  CRYO_TRY(put(pid, d + 8, zero));
  for (int i = 0; i < 128; i++) {
    CRYO_ASSIGN(long got, r.raw(SYS_rt_sigtimedwait, {d, 0, d + 8, 8}));
    if (got < 0) break;
  }
  for (const auto& info : t.pending()) {
    if (info.size() != sizeof(siginfo_t)) return Error(EINVAL, "bad pending siginfo");
    siginfo_t si;
    std::memcpy(&si, info.data(), sizeof si);
    if (si.si_signo <= 0 || si.si_signo > 64 || si.si_signo == SIGKILL || si.si_signo == SIGSTOP) continue;
    CRYO_TRY(ptrace::write_memory(pid, d, info.data(), info.size()));
    CRYO_TRY(r.call("rt_tgsigqueueinfo", SYS_rt_tgsigqueueinfo,
                    {static_cast<uint64_t>(pid), static_cast<uint64_t>(tid), static_cast<uint64_t>(si.si_signo), d}));
  }
  return {};
}

// Whether the task has those supplementary groups already: in a user
// namespace whose setgroups is denied, its processes keep the groups they
// came in with, and setgroups fails even to set them again.
Result<bool> has_groups(pid_t pid, ptrace::Remote& r, uint64_t d, const image::Creds& c) {
  CRYO_ASSIGN(long n, r.call("getgroups", SYS_getgroups, {0, 0}));
  if (n != c.groups_size() || n > 1024) return false;  // 1024: what the trampoline's data page holds
  std::vector<uint32_t> now(static_cast<size_t>(n));
  if (n > 0) {
    CRYO_TRY(r.call("getgroups", SYS_getgroups, {static_cast<uint64_t>(n), d}));
    CRYO_TRY(ptrace::read_memory(pid, d, now.data(), now.size() * 4));
  }
  std::vector<uint32_t> want(c.groups().begin(), c.groups().end());
  std::sort(now.begin(), now.end());
  std::sort(want.begin(), want.end());
  return now == want;
}

Status restore_creds(pid_t pid, ptrace::Remote& r, const mm::Trampoline& tramp, const image::Creds& c) {
  if (c.uids_size() != 4 || c.gids_size() != 4) return Error(EINVAL, "credentials are incomplete");
  bool all_root = true;
  for (auto id : c.uids()) all_root = all_root && id == 0;
  for (auto id : c.gids()) all_root = all_root && id == 0;
  uint64_t full = (1ULL << (CAP_LAST_CAP + 1)) - 1;
  bool full_caps = (c.cap_permitted() & full) == full && (c.cap_effective() & full) == full &&
                   (c.cap_bounding() & full) == full && c.cap_inheritable() == 0 && c.cap_ambient() == 0;
  uint64_t d = tramp.data;
  CRYO_ASSIGN(bool same_groups, has_groups(pid, r, d, c));
  if ((c.groups_size() > 0 || !all_root) && !same_groups) {
    if (c.groups_size() > 65536) return Error(EINVAL, "too many groups");
    std::vector<uint32_t> groups(c.groups().begin(), c.groups().end());
    if (!groups.empty()) CRYO_TRY(ptrace::write_memory(pid, d, groups.data(), groups.size() * 4));
    CRYO_TRY(r.call("setgroups", SYS_setgroups, {groups.size(), d}));
  }
  if (all_root && full_caps && c.securebits() == 0) {
    if (c.no_new_privs()) CRYO_TRY(r.call("prctl(PR_SET_NO_NEW_PRIVS)", SYS_prctl, {PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0}));
    return {};
  }
  // Bounding set and securebits need CAP_SETPCAP: before the ids change.
  for (int cap = 0; cap <= CAP_LAST_CAP; cap++)
    if (!(c.cap_bounding() & (1ULL << cap))) CRYO_TRY(r.call("PR_CAPBSET_DROP", SYS_prctl, {PR_CAPBSET_DROP, static_cast<uint64_t>(cap)}));
  if (c.securebits()) CRYO_TRY(r.call("PR_SET_SECUREBITS", SYS_prctl, {PR_SET_SECUREBITS, c.securebits()}));
  (void)r.raw(SYS_prctl, {PR_SET_KEEPCAPS, 1});
  CRYO_TRY(r.call("setresgid", SYS_setresgid, {c.gids(0), c.gids(1), c.gids(2)}));
  (void)r.raw(SYS_setfsgid, {c.gids(3)});
  CRYO_TRY(r.call("setresuid", SYS_setresuid, {c.uids(0), c.uids(1), c.uids(2)}));
  (void)r.raw(SYS_setfsuid, {c.uids(3)});
  struct {
    __user_cap_header_struct header;
    __user_cap_data_struct data[2];
  } caps{};
  caps.header.version = _LINUX_CAPABILITY_VERSION_3;
  caps.header.pid = 0;
  for (int i = 0; i < 2; i++) {
    caps.data[i].effective = static_cast<uint32_t>(c.cap_effective() >> (32 * i));
    caps.data[i].permitted = static_cast<uint32_t>(c.cap_permitted() >> (32 * i));
    caps.data[i].inheritable = static_cast<uint32_t>(c.cap_inheritable() >> (32 * i));
  }
  CRYO_TRY(put(pid, d, caps));
  CRYO_TRY(r.call("capset", SYS_capset, {d, d + sizeof(caps.header)}));
  for (int cap = 0; cap <= CAP_LAST_CAP; cap++)
    if (c.cap_ambient() & (1ULL << cap))
      CRYO_TRY(r.call("PR_CAP_AMBIENT_RAISE", SYS_prctl, {PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, static_cast<uint64_t>(cap), 0, 0}));
  (void)r.raw(SYS_prctl, {PR_SET_KEEPCAPS, (c.securebits() & (1u << 4)) ? 1u : 0u});
  if (c.no_new_privs()) CRYO_TRY(r.call("prctl(PR_SET_NO_NEW_PRIVS)", SYS_prctl, {PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0}));
  return {};
}

}  // namespace

Status validate_process(const image::Process& core, const std::vector<int32_t>& tids) {
  if (core.threads_size() != static_cast<int>(tids.size()))
    return Error(EINVAL, "the tree and the core image disagree on the threads");
  for (int i = 0; i < core.threads_size(); i++) {
    const auto& t = core.threads(i);
    if (t.tid() != tids[static_cast<size_t>(i)]) return Error(EINVAL, "thread ids disagree");
    if (t.gpregs().size() != sizeof(user_regs_struct)) return Error(EINVAL, "thread registers have a bad size");
    if (t.xstate().size() < 512 || t.xstate().size() > 16384) return Error(EINVAL, "thread FPU state has a bad size");
    if (t.comm().size() > 64) return Error(EINVAL, "thread name too long");
    if (t.ns_tids_size() != core.threads(0).ns_tids_size() || t.ns_tids_size() >= abi::kMaxPidNsLevels)
      return Error(EINVAL, "thread ids in nested pid namespaces disagree");
    for (int32_t id : t.ns_tids())
      if (id <= 0) return Error(EINVAL, "bad thread id in a nested pid namespace");
  }
  for (const auto& a : core.sigactions())
    if (a.signo() < 1 || a.signo() > 64 || a.signo() == SIGKILL || a.signo() == SIGSTOP)
      return Error(EINVAL, "a signal action names signal " + std::to_string(a.signo()));
  for (const auto& l : core.rlimits())
    if (l.resource() >= RLIMIT_NLIMITS) return Error(EINVAL, "bad rlimit resource");
  for (const auto& t : core.itimers())
    if (t.which() > ITIMER_PROF) return Error(EINVAL, "bad itimer");
  for (const auto& fd : core.fds())
    if (fd.fd() < 0 || fd.fd() >= (1 << 20)) return Error(EINVAL, "bad fd number " + std::to_string(fd.fd()));
  for (const auto& t : core.threads())
    for (const auto& f : t.seccomp())
      if (f.program().empty() || f.program().size() % sizeof(struct sock_filter) ||
          f.program().size() > BPF_MAXINSNS * sizeof(struct sock_filter) || (f.flags() & ~SECCOMP_FILTER_FLAG_LOG))
        return Error(EINVAL, "thread " + std::to_string(t.tid()) + ": a bad seccomp filter");
  for (const auto& t : core.threads())
    if (t.seccomp_strict() && t.seccomp_size() > 0)
      return Error(EINVAL, "thread " + std::to_string(t.tid()) + ": seccomp filters and strict mode at once");
  for (const auto& t : core.posix_timers()) {
    int how = t.notify() & ~SIGEV_THREAD_ID;
    bool to_thread = (t.notify() & SIGEV_THREAD_ID) != 0;
    if (t.id() < 0 || (how != SIGEV_SIGNAL && how != SIGEV_NONE) || (to_thread && how != SIGEV_SIGNAL) ||
        (how == SIGEV_SIGNAL && (t.signo() < 1 || t.signo() > 64)) ||
        (to_thread && std::find(tids.begin(), tids.end(), t.tid()) == tids.end()))
      return Error(EINVAL, "bad POSIX timer " + std::to_string(t.id()));
  }
  if (core.cwd().empty() || core.cwd()[0] != '/' || core.root().empty() || core.root()[0] != '/')
    return Error(EINVAL, "bad cwd or root");
  return {};
}

Result<std::vector<pid_t>> create_threads(ptrace::Remote& leader, const mm::Trampoline& tramp,
                                          const image::Process& core) {
  pid_t pid = leader.tid();
  std::vector<pid_t> tids = {pid};
  for (int i = 1; i < core.threads_size(); i++) {
    const auto& thread = core.threads(i);
    pid_t want = thread.tid();
    // Its id at each level from its own namespace (nested ones first) up to
    // the tree's, as clone3 wants them; the process sees the first.
    std::array<pid_t, abi::kMaxPidNsLevels + 1> ids{};
    size_t levels = 0;
    for (int k = thread.ns_tids_size() - 1; k >= 0; k--) ids[levels++] = thread.ns_tids(k);
    ids[levels++] = want;
    abi::CloneArgs args{};
    args.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
    args.set_tid = tramp.data + 512;
    args.set_tid_size = levels;
    CRYO_TRY(put(pid, tramp.data, args));
    CRYO_TRY(put(pid, tramp.data + 512, ids));
    CRYO_ASSIGN(long got, leader.raw(SYS_clone3, {tramp.data, sizeof args}));
    if (got == -EEXIST) return Error(EEXIST, "thread id " + std::to_string(want) + " is in use");
    if (got < 0) return Error(static_cast<int>(-got), "clone3 of thread " + std::to_string(want));
    if (got != ids[0]) return Error(EINVAL, "clone3 made thread " + std::to_string(got));
    // Auto-attached (PTRACE_O_TRACECLONE): wait for its first stop.
    int status;
    while (::waitpid(want, &status, __WALL) < 0)
      if (errno != EINTR) return errno_error("waitpid new thread " + std::to_string(want));
    tids.push_back(want);
  }
  return tids;
}

namespace {

// Each thread's seccomp filters, the oldest first. The restorer's seize
// suspends them (PTRACE_O_SUSPEND_SECCOMP), so the syscalls cryo still makes
// in the task are not judged by them; they are installed while the task
// still has root's CAP_SYS_ADMIN, which a filter needs without no_new_privs.
Status restore_seccomp(pid_t pid, ptrace::Remote& leader, const mm::Trampoline& tramp, const image::Process& core) {
  size_t largest = 0;
  for (const auto& t : core.threads())
    for (const auto& f : t.seccomp()) largest = std::max(largest, f.program().size());
  if (largest == 0) return {};
  uint64_t size = (largest + 16 + 4095) / 4096 * 4096;
  CRYO_ASSIGN(long mapped, leader.call("mmap", SYS_mmap,
                                       {0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                                        static_cast<uint64_t>(-1), 0}));
  uint64_t scratch = static_cast<uint64_t>(mapped);
  for (const auto& t : core.threads()) {
    CRYO_ASSIGN(ptrace::Remote tr, remote_on(t.tid(), tramp));
    for (const auto& f : t.seccomp()) {
      struct {
        uint16_t len;
        uint64_t filter;
      } fprog = {static_cast<uint16_t>(f.program().size() / sizeof(struct sock_filter)), scratch + 16};
      CRYO_TRY(put(pid, scratch, fprog));
      CRYO_TRY(ptrace::write_memory(pid, scratch + 16, f.program().data(), f.program().size()));
      CRYO_ASSIGN(long got, tr.raw(SYS_seccomp, {SECCOMP_SET_MODE_FILTER, f.flags(), scratch}));
      if (got < 0)
        return Error(static_cast<int>(-got), "thread " + std::to_string(t.tid()) + ": installing a seccomp filter");
    }
  }
  CRYO_TRY(leader.call("munmap", SYS_munmap, {scratch, size}));
  return {};
}

// pidfds name processes of the tree, which all exist now: each is opened by
// its task and put over the placeholder its fd holds.
Status restore_pidfds(ptrace::Remote& r, const image::Process& core, const image::Files& files) {
  for (const auto& fd : core.fds()) {
    if (fd.file_id() == 0 || fd.file_id() > static_cast<uint32_t>(files.files_size())) continue;
    const auto& f = files.files(static_cast<int>(fd.file_id() - 1));
    if (f.kind() != image::FileDesc::PIDFD) continue;
    std::string what = "pidfd of pid " + std::to_string(f.pidfd_target()) + " at fd " + std::to_string(fd.fd());
    uint64_t flags = f.flags() & (O_NONBLOCK | O_EXCL);  // PIDFD_NONBLOCK, PIDFD_THREAD
    CRYO_ASSIGN(long made, r.raw(SYS_pidfd_open, {static_cast<uint64_t>(f.pidfd_target()), flags}));
    if (made < 0) return Error(static_cast<int>(-made), what + ": pidfd_open");
    CRYO_ASSIGN(long moved, r.raw(SYS_dup3, {static_cast<uint64_t>(made), static_cast<uint64_t>(fd.fd()),
                                            fd.cloexec() ? static_cast<uint64_t>(O_CLOEXEC) : 0}));
    (void)r.raw(SYS_close, {static_cast<uint64_t>(made)});
    if (moved < 0) return Error(static_cast<int>(-moved), what + ": dup3");
  }
  return {};
}

// Each timer_create timer with its own id, then armed as it was.
Status restore_posix_timers(pid_t pid, ptrace::Remote& r, uint64_t d, const image::Process& core) {
  if (core.posix_timers_size() == 0) return {};
  CRYO_ASSIGN(long on, r.raw(SYS_prctl, {abi::kPrTimerCreateRestoreIds, 1, 0, 0, 0}));
  if (on < 0)
    return Error(static_cast<int>(-on), "this kernel cannot create a POSIX timer with a given id "
                                        "(PR_TIMER_CREATE_RESTORE_IDS, Linux 6.17)");
  for (const auto& t : core.posix_timers()) {
    std::string what = "POSIX timer " + std::to_string(t.id());
    abi::KernelSigevent ev{};
    ev.value = t.value();
    ev.signo = t.signo();
    ev.notify = t.notify();
    ev.tid = t.tid();
    int32_t id = t.id();
    auto split = [](uint64_t ns) {
      return timespec{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    };
    struct itimerspec its = {split(t.interval_ns()), split(t.value_ns())};
    CRYO_TRY(put(pid, d, ev));
    CRYO_TRY(put(pid, d + 64, id));
    CRYO_TRY(put(pid, d + 128, its));
    CRYO_ASSIGN(long made, r.raw(SYS_timer_create, {static_cast<uint64_t>(t.clockid()), d, d + 64}));
    if (made < 0) return Error(static_cast<int>(-made), what + ": timer_create");
    int32_t got = 0;
    CRYO_ASSIGN(got, get<int32_t>(pid, d + 64));
    if (got != id) return Error(EEXIST, what + " was made with id " + std::to_string(got));
    if (t.value_ns() != 0) {
      CRYO_ASSIGN(long set, r.raw(SYS_timer_settime, {static_cast<uint64_t>(id), 0, d + 128, 0}));
      if (set < 0) return Error(static_cast<int>(-set), what + ": timer_settime");
    }
  }
  CRYO_TRY(r.call("prctl(PR_TIMER_CREATE_RESTORE_IDS, off)", SYS_prctl, {abi::kPrTimerCreateRestoreIds, 0, 0, 0, 0}));
  return {};
}

// Lowering it below what the process was given needs CAP_SYS_RESOURCE.
// Each MEMBARRIER_CMD_REGISTER_* command the process had run, run again in
// it: the registrations belong to its mm, which is the stub's own now.
Status restore_membarrier(ptrace::Remote& r, const image::Process& core) {
  uint32_t registered = core.membarrier_registrations();
  if (registered & ~abi::kMembarrierRegisterCommands)
    return Error(EINVAL, "unknown membarrier registrations " + std::to_string(registered));
  for (uint32_t bit = 1; bit != 0 && bit <= registered; bit <<= 1) {
    if (!(registered & bit)) continue;
    CRYO_TRY(r.call("membarrier register", SYS_membarrier, {bit, 0, 0})
                 .wrap("membarrier registration " + std::to_string(bit)));
  }
  return {};
}

Status restore_oom_score_adj(pid_t pid, const image::Process& core) {
  if (!core.has_oom_score_adj()) return {};
  std::string path = "/proc/" + std::to_string(pid) + "/oom_score_adj";
  CRYO_ASSIGN(std::string now, read_file(path));
  if (std::atoi(now.c_str()) == core.oom_score_adj()) return {};
  CRYO_ASSIGN(UniqueFd file, open_file(path, O_WRONLY));
  Status st = write_all(file.get(), std::to_string(core.oom_score_adj()));
  if (!st.ok() && st.error().code() == EACCES)
    return Error(EACCES, "setting oom_score_adj to " + std::to_string(core.oom_score_adj()) +
                             " (lowering it needs CAP_SYS_RESOURCE)");
  return st;
}

Status restore_coredump_filter(pid_t pid, const image::Process& core) {
  if (!core.has_coredump_filter()) return {};
  std::string path = "/proc/" + std::to_string(pid) + "/coredump_filter";
  CRYO_ASSIGN(std::string now, read_file(path));
  if (std::strtoul(now.c_str(), nullptr, 16) == core.coredump_filter()) return {};
  char hex[16];
  snprintf(hex, sizeof hex, "%#x", core.coredump_filter());  // (read in base 0)
  CRYO_ASSIGN(UniqueFd file, open_file(path, O_WRONLY));
  return write_all(file.get(), hex).wrap("writing " + path);
}

// Only the process itself may write its /proc/self/loginuid.
Status restore_loginuid(pid_t pid, ptrace::Remote& r, uint64_t d, const image::Process& core) {
  if (!core.has_loginuid()) return {};
  auto now = read_file("/proc/" + std::to_string(pid) + "/loginuid");
  if (!now.ok() || static_cast<uint32_t>(std::strtoul(now->c_str(), nullptr, 10)) == core.loginuid()) return {};
  std::string path = "/proc/self/loginuid";
  std::string value = std::to_string(static_cast<int64_t>(static_cast<int32_t>(core.loginuid())));
  CRYO_TRY(ptrace::write_memory(pid, d, path.c_str(), path.size() + 1));
  CRYO_TRY(ptrace::write_memory(pid, d + 64, value.data(), value.size()));
  CRYO_ASSIGN(long fd, r.call("open /proc/self/loginuid", SYS_open, {d, O_WRONLY}));
  auto wrote = r.call("write loginuid", SYS_write, {static_cast<uint64_t>(fd), d + 64, value.size()});
  (void)r.raw(SYS_close, {static_cast<uint64_t>(fd)});
  if (!wrote.ok()) return std::move(wrote).error();
  return {};
}

}  // namespace

Status restore_state(pid_t pid, const mm::Trampoline& tramp, const image::Process& core,
                     const image::Files& files, const StateOptions& options) {
  for (const auto& t : core.threads())
    CRYO_TRY(restore_thread(pid, t.tid(), tramp, t).wrap("thread " + std::to_string(t.tid())));

  CRYO_ASSIGN(ptrace::Remote r, remote_on(pid, tramp));
  uint64_t d = tramp.data;
  for (const auto& a : core.sigactions()) {
    abi::KernelSigaction ka{a.handler(), a.flags(), a.restorer(), a.mask()};
    CRYO_TRY(put(pid, d, ka));
    CRYO_TRY(r.call("rt_sigaction", SYS_rt_sigaction, {a.signo(), d, 0, 8}));
  }
  for (const auto& info : core.shared_pending()) {
    if (info.size() != sizeof(siginfo_t)) return Error(EINVAL, "bad pending siginfo");
    siginfo_t si;
    std::memcpy(&si, info.data(), sizeof si);
    if (si.si_signo <= 0 || si.si_signo > 64 || si.si_signo == SIGKILL || si.si_signo == SIGSTOP) continue;
    CRYO_TRY(ptrace::write_memory(pid, d, info.data(), info.size()));
    CRYO_TRY(r.call("rt_sigqueueinfo", SYS_rt_sigqueueinfo, {static_cast<uint64_t>(pid), static_cast<uint64_t>(si.si_signo), d}));
  }
  for (const auto& t : core.itimers()) {
    struct itimerval itv;
    itv.it_interval = {static_cast<time_t>(t.interval_us() / 1000000), static_cast<suseconds_t>(t.interval_us() % 1000000)};
    itv.it_value = {static_cast<time_t>(t.value_us() / 1000000), static_cast<suseconds_t>(t.value_us() % 1000000)};
    CRYO_TRY(put(pid, d, itv));
    CRYO_TRY(r.call("setitimer", SYS_setitimer, {t.which(), d, 0}));
  }
  CRYO_TRY(restore_posix_timers(pid, r, d, core));
  if (options.own_fd_table) {
    CRYO_TRY(restore_pidfds(r, core, files));
    CRYO_TRY(files::reopen_proc_files(r, pid, d, core, files));
  }
  uint64_t pdeath = options.keep_pdeath ? static_cast<uint64_t>(core.pdeath_signal()) : 0;
  CRYO_TRY(r.call("prctl(PR_SET_PDEATHSIG)", SYS_prctl, {PR_SET_PDEATHSIG, pdeath}));
  if (core.child_subreaper()) CRYO_TRY(r.call("prctl(PR_SET_CHILD_SUBREAPER)", SYS_prctl, {PR_SET_CHILD_SUBREAPER, 1}));
  if (!core.dumpable()) CRYO_TRY(r.call("prctl(PR_SET_DUMPABLE)", SYS_prctl, {PR_SET_DUMPABLE, 0}));
  if (core.thp_disabled()) CRYO_TRY(r.call("prctl(PR_SET_THP_DISABLE)", SYS_prctl, {PR_SET_THP_DISABLE, 1, 0, 0, 0}));
  for (const auto& v : core.vma_policies()) {
    CRYO_TRY(put_policy_mask(pid, d, v.policy()));
    CRYO_TRY(r.call("mbind", SYS_mbind, {v.start(), v.end() - v.start(), v.policy().mode(), d, abi::kMaxPolicyNodes, 0})
                 .wrap("NUMA policy " + std::to_string(v.policy().mode()) + " of nodes " + nodes_text(v.policy()) +
                       " for the mapping at " + std::to_string(v.start()) + " (are they present here?)"));
  }
  if (core.memory_merge())
    CRYO_TRY(r.call("prctl(PR_SET_MEMORY_MERGE)", SYS_prctl, {abi::kPrSetMemoryMerge, 1, 0, 0, 0}));
  // The memory is all in place (finish_mm): from here on no mapping may gain PROT_EXEC.
  if (core.mdwe()) CRYO_TRY(r.call("prctl(PR_SET_MDWE)", SYS_prctl, {abi::kPrSetMdwe, core.mdwe(), 0, 0, 0}));
  CRYO_TRY(restore_membarrier(r, core));
  CRYO_TRY(restore_oom_score_adj(pid, core));
  CRYO_TRY(restore_coredump_filter(pid, core));
  CRYO_TRY(restore_loginuid(pid, r, d, core));
  // The stub has the limits cryo had, most often the recorded ones already:
  // only those that differ cost a remote syscall.
  std::vector<proc::Limit> now;
  if (auto text = read_file("/proc/" + std::to_string(pid) + "/limits"); text.ok())
    if (auto parsed = proc::parse_limits(*text); parsed.ok()) now = std::move(*parsed);
  for (const auto& l : core.rlimits()) {
    if (l.resource() < now.size() && now[l.resource()].soft == l.soft() && now[l.resource()].hard == l.hard()) continue;
    struct rlimit rl = {l.soft(), l.hard()};
    CRYO_TRY(put(pid, d, rl));
    long got = 0;
    CRYO_ASSIGN(got, r.raw(SYS_prlimit64, {0, l.resource(), d, 0}));
    if (got < 0)
      return Error(static_cast<int>(-got), "setting rlimit " + std::to_string(l.resource()) + " to " +
                                               std::to_string(l.soft()) + "/" + std::to_string(l.hard()) +
                                               " (raising a hard limit needs CAP_SYS_RESOURCE)");
  }
  if (options.own_fd_table)
    CRYO_TRY(r.call("close_range", SYS_close_range,
                    {static_cast<uint64_t>(options.fd_zone.begin),
                     options.fd_zone.end == INT_MAX ? ~0U : static_cast<uint64_t>(options.fd_zone.end - 1), 0}));
  // File locks, now that no other fd of their files is left to be closed.
  for (const auto& lock : core.locks()) {
    files::LockCall c = files::lock_call(lock);
    uint64_t third = c.third;
    if (c.needs_flock_struct) {
      CRYO_TRY(put(pid, d, c.fl));
      third = d;
    }
    CRYO_ASSIGN(long got, r.raw(c.nr, {c.fd, c.arg, third}));
    if (got < 0)
      return Error(static_cast<int>(-got), "taking back the file lock on fd " + std::to_string(lock.fd()) +
                                               " (another process holds it now?)");
  }
  CRYO_TRY(restore_seccomp(pid, r, tramp, core));
  // Credentials belong to each thread: its own where it had its own, else
  // the process's.
  for (const auto& t : core.threads()) {
    CRYO_ASSIGN(ptrace::Remote tr, remote_on(t.tid(), tramp));
    CRYO_TRY(restore_creds(pid, tr, tramp, t.has_creds() ? t.creds() : core.creds())
                 .wrap("credentials of thread " + std::to_string(t.tid())));
  }
  // Strict mode last, as nothing but read, write, exit and sigreturn is
  // allowed after it (cryo's own syscalls still pass: the seize suspends
  // seccomp until the task is let go).
  for (const auto& t : core.threads()) {
    if (!t.seccomp_strict()) continue;
    CRYO_ASSIGN(ptrace::Remote tr, remote_on(t.tid(), tramp));
    CRYO_TRY(tr.call("seccomp(SECCOMP_SET_MODE_STRICT)", SYS_seccomp, {SECCOMP_SET_MODE_STRICT, 0, 0})
                 .wrap("thread " + std::to_string(t.tid())));
  }
  return {};
}

Status finish(pid_t pid, const mm::Trampoline& tramp, const image::Process& core) {
  CRYO_ASSIGN(ptrace::Remote r, remote_on(pid, tramp));
  CRYO_TRY(r.call("munmap trampoline", SYS_munmap, {tramp.code, mm::Trampoline::kSize}));
  for (const auto& t : core.threads()) {
    user_regs_struct regs;
    std::memcpy(&regs, t.gpregs().data(), sizeof regs);
    CRYO_TRY(ptrace::set_xstate(t.tid(), t.xstate()));
    CRYO_TRY(ptrace::set_regs(t.tid(), ptrace::normalize_restart(regs)));
    CRYO_TRY(ptrace::set_sigmask(t.tid(), t.blocked()));
    if (t.scheduling().has_deadline()) CRYO_TRY(restore_deadline(t.tid(), t.scheduling().deadline()));
    // Last: from here on a syscall of cryo's in the thread could be dispatched.
    if (t.has_syscall_dispatch()) {
      const auto& d = t.syscall_dispatch();
      CRYO_TRY(ptrace::set_syscall_dispatch(t.tid(), {d.mode(), d.selector(), d.offset(), d.len()}));
    }
  }
  return {};
}

}  // namespace cryo::task
