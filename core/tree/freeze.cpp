#include "core/tree/freeze.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <set>

#include "core/ptrace/ptrace.h"
#include "core/sys/io.h"
#include "core/sys/log.h"
#include "core/sys/util.h"

namespace cryo::tree {
namespace {

// Seccomp filters would judge the syscalls cryo makes in the tasks: suspend them.
constexpr int kSeizeOptions = PTRACE_O_TRACESYSGOOD | PTRACE_O_SUSPEND_SECCOMP;
// The code segment of 64-bit user code on x86-64 (__USER_CS); 32-bit code runs in 0x23.
constexpr unsigned long long kUser64CodeSegment = 0x33;
// SYSCALL_DISPATCH_FILTER_ALLOW and _BLOCK.
constexpr uint8_t kDispatchAllow = 0, kDispatchBlock = 1;

// The pid of the tracer of pid's thread tid (0: none).
pid_t tracer_of(pid_t pid, pid_t tid) {
  auto text = read_file("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/status");
  if (!text.ok()) return 0;
  size_t at = text->find("\nTracerPid:\t");
  return at == std::string::npos ? 0 : static_cast<pid_t>(std::atoi(text->c_str() + at + 12));
}

}  // namespace

FrozenTree::FrozenTree(FrozenTree&& other) noexcept
    : procs_(std::move(other.procs_)),
      parked_(std::move(other.parked_)),
      freezer_(std::exchange(other.freezer_, nullptr)),
      strays_(std::move(other.strays_)),
      active_(std::exchange(other.active_, false)) {}

FrozenTree::~FrozenTree() { thaw(); }

const FrozenProcess* FrozenTree::find(pid_t pid) const {
  for (const auto& p : procs_)
    if (p.pid == pid) return &p;
  return nullptr;
}

Status FrozenTree::add_process(pid_t pid, std::vector<pid_t>* children, int stop_timeout_ms) {
  FrozenProcess proc;
  proc.pid = pid;
  auto stat = proc::read_stat(pid);
  if (!stat.ok() && (stat.error().code() == ENOENT || stat.error().code() == ESRCH)) return Error(ESRCH, "gone");
  if (!stat.ok()) return std::move(stat).error();
  proc.stat = std::move(*stat);
  if ((proc.stat.state == 'Z' || proc.stat.state == 'X') && proc.stat.num_threads > 1)
    return Error("pid " + std::to_string(pid) + ": its main thread has exited while other threads run (not supported)");
  if ((proc.stat.state == 'Z' || proc.stat.state == 'X') && procs_.empty())
    return Error(ESRCH, "pid " + std::to_string(pid) + " is a zombie: it has exited and there is nothing to dump");
  if (procs_.empty() && !read_link("/proc/" + std::to_string(pid) + "/exe").ok()) {
    auto cmdline = read_file("/proc/" + std::to_string(pid) + "/cmdline");
    if (!cmdline.ok() || cmdline->empty()) return Error("pid " + std::to_string(pid) + " is a kernel thread");
  }
  if (proc.stat.state == 'Z' || proc.stat.state == 'X') {
    proc.zombie = true;
    proc.tids = {pid};
    procs_.push_back(std::move(proc));
    return {};
  }
  proc.stopped = proc.stat.state == 'T';
  // Seize threads until a listing shows no thread we do not hold: a running
  // thread can create others until it is stopped itself.
  procs_.push_back(std::move(proc));
  FrozenProcess& p = procs_.back();
  for (;;) {
    CRYO_ASSIGN(auto tids, proc::list_threads(pid));
    bool added = false;
    for (pid_t tid : tids) {
      if (std::find(p.tids.begin(), p.tids.end(), tid) != p.tids.end()) continue;
      if (strays_.erase(tid)) {  // seized in the frozen cgroup: its stop is on its way
        CRYO_TRY(ptrace::wait_interrupt_stop(tid, stop_timeout_ms));
        p.tids.push_back(tid);
        added = true;
        continue;
      }
      auto st = ptrace::seize_and_stop(tid, kSeizeOptions, stop_timeout_ms);
      // EPERM: traced by somebody else, or exiting right now (then it is
      // soon a zombie or gone: look again).
      for (int retry = 0; !st.ok() && st.error().code() == EPERM && retry < 50 && !tracer_of(pid, tid); retry++) {
        ::usleep(2000);
        st = ptrace::seize_and_stop(tid, kSeizeOptions, stop_timeout_ms);
      }
      if (!st.ok()) {
        if (st.error().code() == ESRCH) continue;  // the thread exited meanwhile
        if (st.error().code() == ETIMEDOUT) {
          p.tids.push_back(tid);  // seized though not stopped: released with the others
          return std::move(st).error();
        }
        if (st.error().code() == EPERM) {
          auto now = proc::read_stat(pid);
          if (!now.ok() || now->state == 'Z' || now->state == 'X') continue;  // it is exiting
          if (pid_t tracer = tracer_of(pid, tid)) {
            auto comm = read_file("/proc/" + std::to_string(tracer) + "/comm");
            std::string name = comm.ok() ? " (" + comm->substr(0, comm->find('\n')) + ")" : "";
            return Error(EPERM, "pid " + std::to_string(pid) + " tid " + std::to_string(tid) + " is traced by pid " +
                                    std::to_string(tracer) + name + ": a traced process cannot be dumped (detach it first)");
          }
          return Error(EPERM, "pid " + std::to_string(pid) + " tid " + std::to_string(tid) +
                                  " cannot be seized (is another debugger tracing it?)");
        }
        return std::move(st).error();
      }
      p.tids.push_back(tid);
      added = true;
    }
    if (!added) break;
  }
  if (std::find(p.tids.begin(), p.tids.end(), pid) == p.tids.end()) {
    // It exited while we came: a zombie now if its (frozen) parent has not
    // reaped it, else gone altogether.
    for (pid_t tid : p.tids) (void)ptrace::detach(tid);
    procs_.pop_back();
    auto st = proc::read_stat(pid);
    if (!st.ok()) return Error(ESRCH, "gone");
    if (st->state != 'Z' && st->state != 'X')
      return Error(EAGAIN, "pid " + std::to_string(pid) + " cannot be seized though it runs");
    FrozenProcess zombie;
    zombie.pid = pid;
    zombie.stat = *st;
    zombie.zombie = true;
    zombie.tids = {pid};
    procs_.push_back(std::move(zombie));
    return {};
  }
  std::iter_swap(p.tids.begin(), std::find(p.tids.begin(), p.tids.end(), pid));
  // cryo's remote syscalls and register images are x86-64's: a 32-bit
  // program (or a thread of a 64-bit one in a 32-bit code segment) is
  // refused here, before anything is done in it.
  // Nor may a thread's syscall user dispatch turn cryo's syscalls into
  // SIGSYS: its selector must let syscalls through (Wine's does while the
  // thread runs its Linux side, where a waiting thread is).
  for (pid_t tid : p.tids) {
    std::string who = "pid " + std::to_string(pid) + (tid == pid ? "" : " tid " + std::to_string(tid));
    CRYO_ASSIGN(user_regs_struct regs, ptrace::get_regs(tid));
    if (regs.cs != kUser64CodeSegment) return Error(ENOTSUP, who + ": runs 32-bit (ia32) code, which is not supported");
    CRYO_ASSIGN(ptrace::SyscallDispatch sud, ptrace::get_syscall_dispatch(tid));
    if (!sud.mode) continue;
    uint8_t selector = kDispatchBlock;
    if (sud.selector) CRYO_TRY(ptrace::read_memory(tid, sud.selector, &selector, 1).wrap(who + ": its dispatch selector"));
    if (selector != kDispatchAllow)
      return Error(EBUSY, who + ": its syscall user dispatch blocks syscalls right now (selector " +
                              (sud.selector ? "byte " + std::to_string(selector) : std::string("none")) +
                              "), cryo's own among them (not supported: dump it while it lets them through)");
  }
  for (pid_t tid : p.tids) {
    CRYO_ASSIGN(auto kids, proc::list_children(pid, tid));
    children->insert(children->end(), kids.begin(), kids.end());
  }
  return {};
}

Status FrozenTree::seize_frozen_cgroup(int timeout_ms) {
  CRYO_TRY(freezer_->freeze(timeout_ms));
  CRYO_ASSIGN(auto tids, freezer_->threads());
  for (pid_t tid : tids) {
    auto st = ptrace::seize(tid, kSeizeOptions);
    if (!st.ok() && st.error().code() == ESRCH) continue;  // exited before the freeze took it
    if (!st.ok())
      return Error(st.error().code(), "task " + std::to_string(tid) + " of cgroup " + freezer_->dir() +
                                          " cannot be seized (is another debugger tracing it?)");
    strays_.insert(tid);
    // Queued: it stops as soon as the cgroup thaws, before running a thing.
    CRYO_TRY(ptrace::interrupt(tid));
  }
  return freezer_->thaw();
}

Result<FrozenTree> FrozenTree::freeze(pid_t root, int timeout_s, cgroup::Freezer* freezer) {
  uint64_t deadline = now_us() + static_cast<uint64_t>(timeout_s) * 1000000;
  if (root <= 0) return Error(EINVAL, "no pid to dump");
  if (root == getpid()) return Error(EINVAL, "cryo cannot dump itself");
  FrozenTree tree;
  tree.active_ = true;
  if (freezer) {
    tree.freezer_ = freezer;
    CRYO_TRY(freezer->watch());
    CRYO_TRY(tree.seize_frozen_cgroup(timeout_s * 1000).wrap("--freeze-cgroup"));
  }
  std::deque<pid_t> queue = {root};
  std::set<pid_t> seen = {root};
  while (!queue.empty()) {
    if (now_us() > deadline)
      return Error(ETIMEDOUT, "the tree of pid " + std::to_string(root) + " was not frozen within " +
                                  std::to_string(timeout_s) + " s (--timeout)");
    pid_t pid = queue.front();
    queue.pop_front();
    if (pid == getpid()) return Error(EINVAL, "cryo cannot dump a tree that contains itself");
    std::vector<pid_t> children;
    int left_ms = static_cast<int>((deadline - std::min(deadline, now_us())) / 1000);
    auto st = tree.add_process(pid, &children, std::min(left_ms, 5000));
    if (!st.ok() && st.error().code() == ESRCH && st.error().context() == "gone" && pid != root) continue;
    if (!st.ok()) {
      if (pid == root && st.error().code() == ESRCH && st.error().context() == "gone")
        return Error(ESRCH, "pid " + std::to_string(pid) + " does not exist");
      return std::move(st).error().wrap("freezing pid " + std::to_string(pid));
    }
    std::sort(children.begin(), children.end());
    for (pid_t c : children)
      if (seen.insert(c).second) queue.push_back(c);
  }
  if (!tree.strays_.empty()) {
    pid_t tid = *tree.strays_.begin();
    auto status = read_file("/proc/" + std::to_string(tid) + "/status");
    std::string tgid = "?";
    if (size_t at = status.ok() ? status->find("\nTgid:\t") : std::string::npos; at != std::string::npos)
      tgid = status->substr(at + 7, status->find('\n', at + 7) - at - 7);
    return Error(EINVAL, "pid " + tgid + " (thread " + std::to_string(tid) + ") is in cgroup " + freezer->dir() +
                             " but not in the tree of pid " + std::to_string(root) +
                             ": --freeze-cgroup wants a cgroup that holds the tree alone");
  }
  return tree;
}

Status park_thread(Guard& guard, pid_t tid, uint64_t ip, std::map<pid_t, ParkedThread>* parked) {
  CRYO_ASSIGN(user_regs_struct regs, ptrace::get_regs(tid));
  CRYO_ASSIGN(uint64_t mask, ptrace::get_sigmask(tid));
  CRYO_TRY(guard.parking(tid, ip, regs, mask));
  (*parked)[tid] = ParkedThread{regs, mask};
  // Mask first: a thread let go between the two runs its own code with
  // signals held back, which the guard undoes; the other order could run
  // pause() with a handler free to return into the vDSO.
  CRYO_TRY(ptrace::set_sigmask(tid, ~0ULL));
  user_regs_struct at_pause = regs;
  at_pause.rip = ip;
  at_pause.rax = SYS_pause;
  at_pause.orig_rax = static_cast<unsigned long long>(-1);
  return ptrace::set_regs(tid, at_pause);
}

Status unpark_thread(Guard& guard, pid_t tid, const ParkedThread& was) {
  // Registers first, then the mask: the reverse of park_thread(); the guard
  // last, so that it still knows the thread should cryo die in between.
  CRYO_TRY(ptrace::set_regs(tid, was.regs));
  CRYO_TRY(ptrace::set_sigmask(tid, was.mask));
  return guard.unparked(tid);
}

Status FrozenTree::park(Guard& guard, const std::map<pid_t, uint64_t>& syscall_ips) {
  for (const auto& p : procs_) {
    if (p.zombie) continue;
    uint64_t ip = syscall_ips.at(p.pid);
    for (pid_t tid : p.tids) CRYO_TRY(park_thread(guard, tid, ip, &parked_));
  }
  return {};
}

Status FrozenTree::unpark(Guard& guard) {
  Status first;
  for (auto it = parked_.begin(); it != parked_.end(); it = parked_.erase(it)) {
    Status st = unpark_thread(guard, it->first, it->second);
    if (!st.ok() && first.ok()) first = std::move(st);
  }
  return first;
}

void FrozenTree::thaw() {
  if (!active_) return;
  for (const auto& [tid, t] : parked_) {
    (void)ptrace::set_regs(tid, t.regs);
    (void)ptrace::set_sigmask(tid, t.mask);
  }
  parked_.clear();
  active_ = false;
  if (freezer_) {
    // Threads of the cgroup that were never taken into the tree reach their
    // stop once the cgroup runs, and only a stopped tracee can be let go.
    if (!strays_.empty()) (void)freezer_->thaw();
    for (pid_t tid : strays_)
      if (ptrace::wait_interrupt_stop(tid, 2000).ok()) (void)ptrace::detach(tid);
    strays_.clear();
    // Frozen again while every thread still sits in its ptrace stop (which
    // counts as frozen): let go, each goes straight into the freezer.
    if (freezer_->was_frozen()) {
      auto st = freezer_->request_freeze();
      if (!st.ok()) log::warn(st.error().message());
    }
  }
  for (const auto& p : procs_) {
    if (p.zombie) continue;
    for (pid_t tid : p.tids) {
      auto st = ptrace::detach(tid);
      if (!st.ok()) log::warn(st.error().message());
    }
    // A process that was stopped stops again by itself: detaching puts a
    // task back into a group stop still in force. Sending its stop signal
    // again would leave one pending for later.
  }
  // Stop signals that arrived while cryo ran syscalls in a task were held
  // back (ptrace::Remote): they take effect now, as they would have.
  for (const auto& [pid, sig] : ptrace::take_deferred_stops()) ::kill(pid, sig);
}

void FrozenTree::kill_all() {
  if (!active_) return;
  active_ = false;
  parked_.clear();
  for (const auto& p : procs_)
    if (!p.zombie) ::kill(p.pid, SIGKILL);
  // A dying process frees its memory itself, a page at a time, before it
  // can be waited for, and the dump waits that out (no pid of the tree may
  // be taken when it returns): 45 ms for 512 MiB here, 230 ms for 2 GiB,
  // a fifth of the time it took to write the pages. process_mrelease frees
  // it from here too, on another CPU than the dying task's: 27 and 134 ms.
  // Best effort: a process whose memory is gone already (ESRCH) or shared
  // with one that lives on (EINVAL) frees what it must as it exits.
  for (const auto& p : procs_) {
    if (p.zombie) continue;
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, p.pid, 0));
    if (pidfd < 0) continue;
    (void)::syscall(SYS_process_mrelease, pidfd, 0);
    ::close(pidfd);
  }
  // As their tracer we see each thread die, in whatever order they can: a
  // leader only after its other threads, and the init of a pid namespace
  // (a thread of it, even) only once every other task of the namespace,
  // traced by us, has been waited for. So no wait may block: each is tried
  // in turn until all are done.
  std::vector<pid_t> left;
  for (const auto& p : procs_)
    if (!p.zombie) left.insert(left.end(), p.tids.begin(), p.tids.end());
  // A killed task is gone within a few hundred microseconds: short naps
  // first (a 500 us nap was most of the wait, 5% of a tiny dump's time).
  for (int round = 0; !left.empty(); round++) {
    size_t before = left.size();
    std::erase_if(left, [](pid_t tid) {
      int status;
      pid_t got = ::waitpid(tid, &status, __WALL | WNOHANG);
      return got == tid || (got < 0 && errno == ECHILD);
    });
    if (left.size() == before) ::usleep(round < 20 ? 50 : 500);
  }
  if (freezer_ && freezer_->was_frozen()) (void)freezer_->request_freeze();  // as it was found, if empty now
}

}  // namespace cryo::tree
