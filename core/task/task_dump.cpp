#include "core/task/task_dump.h"

#include <signal.h>
#include <sys/mman.h>
#include <sched.h>
#include <linux/filter.h>
#include <linux/ioprio.h>
#include <linux/mempolicy.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <optional>
#include <sstream>

#include "core/guard/guard.h"
#include "core/mm/aio.h"
#include "core/ptrace/ptrace.h"
#include "core/ptrace/rescue.h"
#include "core/task/parked_leader.h"
#include "core/task/task_probe.h"
#include "core/sys/io.h"
#include "core/sys/log.h"
#include "core/sys/failpoint.h"
#include "core/sys/scope_guard.h"
#include "core/sys/kernel_abi.h"
#include "core/sys/util.h"

namespace cryo::task {
namespace {

std::string proc_path(pid_t pid, const std::string& what) { return "/proc/" + std::to_string(pid) + "/" + what; }

template <typename T>
Result<T> read_remote(pid_t pid, uint64_t addr) {
  T value;
  CRYO_TRY(ptrace::read_memory(pid, addr, &value, sizeof value));
  return value;
}

void fill_creds(const proc::Status& st, image::Creds* c) {
  for (auto u : st.uids) c->add_uids(u);
  for (auto g : st.gids) c->add_gids(g);
  for (auto g : st.groups) c->add_groups(g);
  c->set_cap_inheritable(st.cap_inh);
  c->set_cap_permitted(st.cap_prm);
  c->set_cap_effective(st.cap_eff);
  c->set_cap_bounding(st.cap_bnd);
  c->set_cap_ambient(st.cap_amb);
  c->set_no_new_privs(st.no_new_privs != 0);
}

// `probe` holds the thread's registers and mask as they were before any
// remote syscall.
// The thread's seccomp filters, read by ptrace (the oldest is the last index).
Status dump_seccomp(pid_t tid, image::ThreadState* t) {
  CRYO_ASSIGN(proc::Status st, proc::read_status(tid));
  if (st.seccomp == SECCOMP_MODE_STRICT) {
    t->set_seccomp_strict(true);
    return {};
  }
  if (st.seccomp != SECCOMP_MODE_FILTER) return {};
  std::vector<image::SeccompFilter> filters;
  for (unsigned long index = 0;; index++) {
    long count = ::ptrace(PTRACE_SECCOMP_GET_FILTER, tid, index, nullptr);
    if (count < 0 && errno == ENOENT) break;
    if (count <= 0 || count > BPF_MAXINSNS) return errno_error("PTRACE_SECCOMP_GET_FILTER");
    std::string program(static_cast<size_t>(count) * sizeof(struct sock_filter), '\0');
    if (::ptrace(PTRACE_SECCOMP_GET_FILTER, tid, index, program.data()) != count)
      return errno_error("PTRACE_SECCOMP_GET_FILTER");
    struct __ptrace_seccomp_metadata meta = {index, 0};
    if (::ptrace(PTRACE_SECCOMP_GET_METADATA, tid, sizeof meta, &meta) < 0)
      return errno_error("PTRACE_SECCOMP_GET_METADATA");
    image::SeccompFilter f;
    f.set_program(std::move(program));
    f.set_flags(static_cast<uint32_t>(meta.flags & SECCOMP_FILTER_FLAG_LOG));
    filters.push_back(std::move(f));
  }
  for (auto it = filters.rbegin(); it != filters.rend(); ++it) *t->add_seccomp() = std::move(*it);
  return {};
}

// The NUMA memory policy of the thread r runs in (addr 0) or of its mapping
// at addr (MPOL_F_ADDR: the mapping's own, MPOL_DEFAULT where it has none),
// answered into scratch: false where it is the default (and without NUMA).
Result<bool> read_mempolicy(pid_t pid, ptrace::Remote& r, uint64_t scratch, uint64_t addr, image::MemPolicy* out) {
  static_assert(8 + abi::kPolicyMaskBytes <= ptrace::kScratchSize);
  CRYO_ASSIGN(long got, r.raw(SYS_get_mempolicy, {scratch, scratch + 8, abi::kMaxPolicyNodes, addr,
                                                  addr ? static_cast<uint64_t>(MPOL_F_ADDR) : 0}));
  if (got == -ENOSYS) return false;  // no CONFIG_NUMA
  if (got < 0) return Error(static_cast<int>(-got), "get_mempolicy in " + pid_str(pid));
  CRYO_ASSIGN(int mode, read_remote<int>(pid, scratch));
  if ((mode & ~MPOL_MODE_FLAGS) == MPOL_DEFAULT) return false;
  std::array<uint64_t, abi::kPolicyMaskBytes / 8> mask{};
  CRYO_TRY(ptrace::read_memory(pid, scratch + 8, mask.data(), sizeof mask));
  size_t used = mask.size();
  while (used > 0 && mask[used - 1] == 0) used--;
  out->set_mode(static_cast<uint32_t>(mode));
  for (size_t i = 0; i < used; i++) out->add_nodes(mask[i]);
  return true;
}

// Whether this machine has more than one NUMA node online ("0", "0-1", "0,2").
bool several_numa_nodes() {
  static const bool several = [] {
    auto online = read_file("/sys/devices/system/node/online");
    return online.ok() && online->find_first_of("-,") != std::string::npos;
  }();
  return several;
}

// The mappings with a policy of their own (mbind). numa_maps shows every
// mapping's (the leader's own where a mapping has none): only those it
// shows with another than "default" are asked. Read on a machine of
// several NUMA nodes only: numa_maps walks every page (8 ms for 512 MiB
// here, as much as smaps), and with one node no policy can place memory
// anywhere but there.
Status dump_vma_policies(pid_t pid, ptrace::Remote& r, uint64_t scratch, const std::vector<proc::MapEntry>& maps,
                         image::Process* out) {
  if (!several_numa_nodes()) return {};
  auto text = read_file(proc_path(pid, "numa_maps"));
  if (!text.ok()) return {};  // no CONFIG_NUMA
  for (const auto& line : proc::split_lines(*text)) {
    std::istringstream words{std::string(line)};
    std::string start_hex, policy;
    if (!(words >> start_hex >> policy) || policy == "default") continue;
    uint64_t start = std::strtoull(start_hex.c_str(), nullptr, 16);
    auto m = std::find_if(maps.begin(), maps.end(), [&](const proc::MapEntry& e) { return e.start == start; });
    if (m == maps.end() || m->path == "[vsyscall]") continue;
    image::MemPolicy own;
    CRYO_ASSIGN(bool has, read_mempolicy(pid, r, scratch, start, &own));
    if (!has) continue;
    auto* v = out->add_vma_policies();
    v->set_start(m->start);
    v->set_end(m->end);
    *v->mutable_policy() = std::move(own);
  }
  return {};
}

Status dump_thread(pid_t pid, TaskProbe& probe, uint64_t scratch, image::ThreadState* t) {
  pid_t tid = probe.remote().tid();
  t->set_tid(tid);
  auto& r = probe.remote();
  t->set_gpregs(std::string(reinterpret_cast<const char*>(&probe.regs()), sizeof(user_regs_struct)));
  t->set_blocked(probe.mask());
  t->set_xstate(probe.xstate());
  CRYO_ASSIGN(auto pending, ptrace::peek_pending(tid, false));
  for (auto& p : pending) t->add_pending(std::move(p));

  CRYO_TRY(r.call("sigaltstack", SYS_sigaltstack, {0, scratch}));
  CRYO_ASSIGN(stack_t ss, read_remote<stack_t>(pid, scratch));
  t->mutable_altstack()->set_sp(reinterpret_cast<uint64_t>(ss.ss_sp));
  t->mutable_altstack()->set_flags(static_cast<uint32_t>(ss.ss_flags & ~SS_ONSTACK));
  t->mutable_altstack()->set_size(ss.ss_size);

  CRYO_ASSIGN(long slack, r.call("prctl(PR_GET_TIMERSLACK)", SYS_prctl, {PR_GET_TIMERSLACK}));
  t->set_timer_slack_ns(static_cast<uint64_t>(slack));
  CRYO_TRY(r.call("prctl(PR_GET_TID_ADDRESS)", SYS_prctl, {PR_GET_TID_ADDRESS, scratch}));
  CRYO_ASSIGN(uint64_t tid_address, read_remote<uint64_t>(pid, scratch));
  t->set_clear_child_tid(tid_address);

  CRYO_TRY(dump_seccomp(tid, t));
  image::MemPolicy mempolicy;
  CRYO_ASSIGN(bool own_policy, read_mempolicy(pid, r, scratch, 0, &mempolicy));
  if (own_policy) *t->mutable_mempolicy() = std::move(mempolicy);
  CRYO_ASSIGN(auto sud, ptrace::get_syscall_dispatch(tid));
  if (sud.mode) {
    auto* d = t->mutable_syscall_dispatch();
    d->set_mode(sud.mode);
    d->set_selector(sud.selector);
    d->set_offset(sud.offset);
    d->set_len(sud.len);
  }
  // Credentials belong to each thread: a raw setresuid or capset changes
  // one thread's only. Kept where they differ from the process's.
  CRYO_ASSIGN(proc::Status st, proc::read_status(tid));
  fill_creds(st, t->mutable_creds());
  CRYO_ASSIGN(long securebits, r.call("prctl(PR_GET_SECUREBITS)", SYS_prctl, {PR_GET_SECUREBITS}));
  t->mutable_creds()->set_securebits(static_cast<uint32_t>(securebits));
  CRYO_ASSIGN(auto rseq, ptrace::get_rseq(tid));
  if (rseq.addr) {
    t->mutable_rseq()->set_addr(rseq.addr);
    t->mutable_rseq()->set_len(rseq.len);
    t->mutable_rseq()->set_flags(rseq.flags);
    t->mutable_rseq()->set_signature(rseq.signature);
  }
  auto* sched = t->mutable_scheduling();
  int policy = ::sched_getscheduler(tid);
  struct sched_param param{};
  if (policy < 0 || ::sched_getparam(tid, &param) < 0) return errno_error("sched_getscheduler");
  sched->set_policy(policy);
  sched->set_priority(param.sched_priority);
  if ((policy & ~SCHED_RESET_ON_FORK) == SCHED_DEADLINE) {
    abi::SchedAttr attr{};
    if (::syscall(SYS_sched_getattr, tid, &attr, sizeof attr, 0) < 0) return errno_error("sched_getattr");
    auto* dl = sched->mutable_deadline();
    dl->set_runtime_ns(attr.runtime);
    dl->set_deadline_ns(attr.deadline);
    dl->set_period_ns(attr.period);
    dl->set_flags(attr.flags & abi::kSchedDeadlineFlags);
  }
  errno = 0;
  int nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(tid));
  if (nice == -1 && errno) return errno_error("getpriority");
  sched->set_nice(nice);
  cpu_set_t cpus;
  if (::sched_getaffinity(tid, sizeof cpus, &cpus) < 0) return errno_error("sched_getaffinity");
  const auto* words = reinterpret_cast<const uint64_t*>(&cpus);
  size_t used = sizeof cpus / 8;
  while (used > 1 && words[used - 1] == 0) used--;
  for (size_t i = 0; i < used; i++) sched->add_affinity(words[i]);
  long ioprio = ::syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, tid);
  if (ioprio < 0) return errno_error("ioprio_get");
  sched->set_ioprio(static_cast<uint32_t>(ioprio));
  void* head = nullptr;
  size_t len = 0;
  if (::syscall(SYS_get_robust_list, tid, &head, &len) < 0) return errno_error("get_robust_list");
  t->set_robust_list(reinterpret_cast<uint64_t>(head));
  t->set_robust_list_len(len);
  CRYO_ASSIGN(std::string comm, read_file(proc_path(pid, "task/" + std::to_string(tid) + "/comm")));
  if (!comm.empty() && comm.back() == '\n') comm.pop_back();
  t->set_comm(comm);
  return {};
}

// timer_create timers: what /proc/PID/timers shows, and the time left and
// the interval, which only timer_gettime in the process tells.
Status dump_posix_timers(const tree::FrozenProcess& proc, ptrace::Remote& r, uint64_t scratch, image::Process* out) {
  pid_t pid = proc.pid;
  CRYO_ASSIGN(std::string text, read_file(proc_path(pid, "timers")));
  CRYO_ASSIGN(auto timers, proc::parse_posix_timers(text));
  for (const auto& t : timers) {
    std::string what = pid_str(pid) + ": POSIX timer " + std::to_string(t.id);
    if (t.clockid < 0) return Error(what + " counts the CPU time of another task (not supported)");
    if ((t.notify & ~SIGEV_THREAD_ID) == SIGEV_THREAD) return Error(what + ": kernel SIGEV_THREAD (not supported)");
    bool thread = (t.notify & SIGEV_THREAD_ID) != 0;
    if (thread && std::find(proc.tids.begin(), proc.tids.end(), t.target) == proc.tids.end())
      return Error(what + " signals thread " + std::to_string(t.target) + ", which is not one of its threads");
    CRYO_TRY(r.call("timer_gettime", SYS_timer_gettime, {static_cast<uint64_t>(t.id), scratch}));
    CRYO_ASSIGN(struct itimerspec its, read_remote<struct itimerspec>(pid, scratch));
    auto ns = [](const timespec& ts) {
      return static_cast<uint64_t>(ts.tv_sec) * 1000000000 + static_cast<uint64_t>(ts.tv_nsec);
    };
    auto* p = out->add_posix_timers();
    p->set_id(t.id);
    p->set_clockid(t.clockid);
    p->set_notify(t.notify);
    p->set_signo(t.signo);
    p->set_tid(thread ? t.target : 0);
    p->set_value(t.value);
    p->set_value_ns(ns(its.it_value));
    p->set_interval_ns(ns(its.it_interval));
  }
  return {};
}

// AIO contexts, refused with requests in flight (core/mm/aio.h). Counting
// them changes the process (cryo's requests fill its rings, a memfd and a
// context of cryo's, the leader bound to each CPU in turn), so no thread of
// it may run meanwhile, nor should cryo die: every other thread is parked,
// and the leader's syscalls for cryo rest on a second rescue frame, below its
// own, that leads to pause() with every signal blocked; a guard, told every
// change first, puts back what the count changed through the parked leader
// and gives every thread back if cryo dies in the middle. The count's
// syscalls write their arguments between the two frames.
Result<std::vector<uint64_t>> count_aio(const tree::FrozenProcess& proc, TaskProbe& leader,
                                        const ptrace::RescuePlan* rescue, const std::vector<proc::MapEntry>& maps) {
  pid_t pid = proc.pid;
  CRYO_ASSIGN(auto rings, mm::find_aio_contexts(pid, leader.remote(), maps));
  std::vector<uint64_t> contexts;
  for (const auto* m : rings) contexts.push_back(m->start);
  if (rings.empty()) return contexts;
  // The count's arguments go to a page of room between the two frames, or
  // less (smaller batches of requests).
  mm::AioCountRoom room;
  CRYO_ASSIGN(bool guarded, run_parked(proc.tids, leader, rescue, maps, {4096, 512}, "aio", [&](ParkedRoom& parked) {
    room = {parked.scratch, parked.size, &parked.guard};
    return mm::count_aio_in_flight(pid, parked.remote, rings, maps, room);
  }));
  if (!guarded) {
    // No frame cryo can vouch for (a stack of its own kind, no vDSO): the
    // count runs unguarded, as the leader's other syscalls for cryo do.
    log::debug(pid_str(pid) + ": no room for a parking frame: AIO requests are counted without a guard");
    CRYO_TRY(mm::count_aio_in_flight(pid, leader.remote(), rings, maps, room));
    return contexts;
  }
  failpoint("aio.counted");
  return contexts;
}

Status dump_process_syscalls(const tree::FrozenProcess& proc, const std::vector<proc::MapEntry>& maps,
                             uint64_t syscall_ip, image::Process* out) {
  pid_t pid = proc.pid;
  auto plan = ptrace::plan_rescue(pid, maps);
  if (!plan.ok()) log::debug(plan.error().message() + ": syscalls for cryo run without rescue frames");
  const ptrace::RescuePlan* rescue = plan.ok() ? &*plan : nullptr;
  CRYO_ASSIGN(TaskProbe leader, TaskProbe::attach(pid, syscall_ip, rescue, maps));
  auto& r = leader.remote();
  // Answers go to the scratch below the leader's rescue frame; without one,
  // to a page mapped for the purpose (and unmapped again).
  uint64_t scratch = leader.scratch();
  bool mapped = scratch == 0;
  if (mapped) {
    CRYO_ASSIGN(long scratch_l, r.call("mmap", SYS_mmap,
                                       {0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                                        static_cast<uint64_t>(-1), 0}));
    scratch = static_cast<uint64_t>(scratch_l);
  }
  ScopeGuard unmap([&] {
    if (mapped) (void)r.raw(SYS_munmap, {scratch, 4096});
  });

  CRYO_ASSIGN(long brk, r.call("brk", SYS_brk, {0}));
  out->mutable_mm()->set_brk(static_cast<uint64_t>(brk));

  // Only actions that are not SIG_DFL need asking (and SIGCHLD's, whose
  // SA_NOCLDSTOP and SA_NOCLDWAIT matter even with SIG_DFL): a remote
  // syscall each costs the freeze tens of microseconds.
  CRYO_ASSIGN(proc::Status status, proc::read_status(pid));
  uint64_t asked = status.sig_ignored | status.sig_caught | (1ULL << (SIGCHLD - 1));
  for (int sig = 1; sig <= 64; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP || !(asked & (1ULL << (sig - 1)))) continue;
    CRYO_TRY(r.call("rt_sigaction", SYS_rt_sigaction, {static_cast<uint64_t>(sig), 0, scratch, 8}));
    CRYO_ASSIGN(abi::KernelSigaction ka, read_remote<abi::KernelSigaction>(pid, scratch));
    if (ka.handler == 0 && ka.flags == 0 && ka.mask == 0) continue;  // default: nothing to restore
    auto* a = out->add_sigactions();
    a->set_signo(static_cast<uint32_t>(sig));
    a->set_handler(ka.handler);
    a->set_flags(ka.flags);
    a->set_restorer(ka.restorer);
    a->set_mask(ka.mask);
  }
  for (int which : {ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF}) {
    CRYO_TRY(r.call("getitimer", SYS_getitimer, {static_cast<uint64_t>(which), scratch}));
    CRYO_ASSIGN(struct itimerval it, read_remote<struct itimerval>(pid, scratch));
    if (it.it_value.tv_sec == 0 && it.it_value.tv_usec == 0) continue;
    auto* t = out->add_itimers();
    t->set_which(static_cast<uint32_t>(which));
    t->set_interval_us(static_cast<uint64_t>(it.it_interval.tv_sec) * 1000000 + static_cast<uint64_t>(it.it_interval.tv_usec));
    t->set_value_us(static_cast<uint64_t>(it.it_value.tv_sec) * 1000000 + static_cast<uint64_t>(it.it_value.tv_usec));
  }
  CRYO_TRY(dump_posix_timers(proc, r, scratch, out));
  CRYO_TRY(r.call("prctl(PR_GET_PDEATHSIG)", SYS_prctl, {PR_GET_PDEATHSIG, scratch}));
  CRYO_ASSIGN(int pdeath, read_remote<int>(pid, scratch));
  out->set_pdeath_signal(pdeath);
  CRYO_TRY(r.call("prctl(PR_GET_CHILD_SUBREAPER)", SYS_prctl, {PR_GET_CHILD_SUBREAPER, scratch}));
  CRYO_ASSIGN(int subreaper, read_remote<int>(pid, scratch));
  out->set_child_subreaper(subreaper != 0);
  CRYO_ASSIGN(long dumpable, r.call("prctl(PR_GET_DUMPABLE)", SYS_prctl, {PR_GET_DUMPABLE}));
  out->set_dumpable(dumpable != 0);
  CRYO_ASSIGN(long securebits, r.call("prctl(PR_GET_SECUREBITS)", SYS_prctl, {PR_GET_SECUREBITS}));
  out->mutable_creds()->set_securebits(static_cast<uint32_t>(securebits));
  CRYO_ASSIGN(long thp_disabled, r.call("prctl(PR_GET_THP_DISABLE)", SYS_prctl, {PR_GET_THP_DISABLE}));
  out->set_thp_disabled(thp_disabled != 0);
  // EINVAL before Linux 6.3, where no process has it.
  CRYO_ASSIGN(long mdwe, r.raw(SYS_prctl, {abi::kPrGetMdwe, 0, 0, 0, 0}));
  if (mdwe > 0) out->set_mdwe(static_cast<uint32_t>(mdwe));
  // EINVAL before Linux 6.3, which cannot tell: then nothing is recorded.
  CRYO_ASSIGN(long membarrier, r.raw(SYS_membarrier, {abi::kMembarrierGetRegistrations, 0, 0}));
  if (membarrier > 0) out->set_membarrier_registrations(static_cast<uint32_t>(membarrier));
  CRYO_TRY(dump_vma_policies(pid, r, scratch, maps, out));
  // AIO requests in flight live only in the kernel: refused (the rings are saved with the memory).
  CRYO_ASSIGN(auto aio_contexts, count_aio(proc, leader, rescue, maps));
  for (uint64_t ctx : aio_contexts) out->add_aio_contexts(ctx);

  for (pid_t tid : proc.tids) {
    Status st;
    if (tid == pid) {
      st = dump_thread(pid, leader, scratch, out->add_threads());
    } else {
      // A thread on a stack cryo cannot vouch for (a goroutine's) borrows
      // room far down the leader's, which is stopped meanwhile.
      auto probe = TaskProbe::attach(tid, syscall_ip, rescue, maps, ptrace::lendable_sp(maps, leader.regs().rsp));
      st = probe.ok() ? dump_thread(pid, *probe, scratch, out->add_threads()) : Status(std::move(probe).error());
    }
    if (!st.ok()) return std::move(st).error().wrap("thread " + std::to_string(tid));
    auto& t = *out->mutable_threads(out->threads_size() - 1);
    if (t.creds().SerializeAsString() == out->creds().SerializeAsString()) t.clear_creds();
  }
  unmap.cancel();
  if (mapped) CRYO_TRY(r.call("munmap", SYS_munmap, {scratch, 4096}));
  CRYO_ASSIGN(auto shared, ptrace::peek_pending(pid, true));
  for (auto& s : shared) out->add_shared_pending(std::move(s));
  return {};
}

Status dump_proc_files(pid_t pid, image::Process* out) {
  CRYO_ASSIGN(proc::Status st, proc::read_status(pid));
  fill_creds(st, out->mutable_creds());
  out->set_umask(st.umask);

  CRYO_ASSIGN(std::string limits_text, read_file(proc_path(pid, "limits")));
  CRYO_ASSIGN(auto limits, proc::parse_limits(limits_text));
  for (size_t i = 0; i < limits.size(); i++) {
    auto* l = out->add_rlimits();
    l->set_resource(static_cast<uint32_t>(i));
    l->set_soft(limits[i].soft);
    l->set_hard(limits[i].hard);
  }
  CRYO_ASSIGN(std::string oom, read_file(proc_path(pid, "oom_score_adj")));
  out->set_oom_score_adj(std::atoi(oom.c_str()));
  CRYO_ASSIGN(std::string filter, read_file(proc_path(pid, "coredump_filter")));
  out->set_coredump_filter(static_cast<uint32_t>(std::strtoul(filter.c_str(), nullptr, 16)));
  // The audit login uid (absent without CONFIG_AUDIT).
  if (auto loginuid = read_file(proc_path(pid, "loginuid")); loginuid.ok())
    out->set_loginuid(static_cast<uint32_t>(std::strtoul(loginuid->c_str(), nullptr, 10)));
  else
    out->set_loginuid(~0u);
  CRYO_ASSIGN(std::string personality, read_file(proc_path(pid, "personality")));
  out->set_personality(static_cast<uint32_t>(std::stoul(personality, nullptr, 16)));
  CRYO_ASSIGN(std::string cwd, read_link(proc_path(pid, "cwd")));
  CRYO_ASSIGN(std::string root, read_link(proc_path(pid, "root")));
  out->set_cwd(cwd);  // one removed while in use is made again from the files' image (cwd_file_id)
  out->set_root(root);

  CRYO_ASSIGN(proc::Stat stat, proc::read_stat(pid));
  auto* mm = out->mutable_mm();
  mm->set_start_code(stat.start_code);
  mm->set_end_code(stat.end_code);
  mm->set_start_data(stat.start_data);
  mm->set_end_data(stat.end_data);
  mm->set_start_brk(stat.start_brk);
  mm->set_start_stack(stat.start_stack);
  mm->set_arg_start(stat.arg_start);
  mm->set_arg_end(stat.arg_end);
  mm->set_env_start(stat.env_start);
  mm->set_env_end(stat.env_end);
  CRYO_ASSIGN(std::string auxv, read_file(proc_path(pid, "auxv")));
  mm->set_auxv(auxv);
  // (No ksm_stat without CONFIG_KSM, nor the line before Linux 6.4: no process has it then.)
  if (auto ksm = read_file(proc_path(pid, "ksm_stat")); ksm.ok())
    out->set_memory_merge(("\n" + *ksm).find("\nksm_merge_any: yes\n") != std::string::npos);

  return {};
}

}  // namespace

Status dump_process(const tree::FrozenProcess& proc, const std::vector<proc::MapEntry>& maps, uint64_t syscall_ip,
                    image::Process* out) {
  out->set_pid(proc.pid);
  CRYO_TRY(dump_proc_files(proc.pid, out));
  return dump_process_syscalls(proc, maps, syscall_ip, out);
}

}  // namespace cryo::task
