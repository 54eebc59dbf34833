#include "core/ptrace/ptrace.h"

#include <elf.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "core/sys/failpoint.h"
#include "core/sys/io.h"
#include "core/sys/scope_guard.h"
#include "core/sys/util.h"

namespace cryo::ptrace {
namespace {

std::string who(pid_t tid) { return "task " + std::to_string(tid); }

// The process a thread belongs to (the thread itself if /proc cannot say).
pid_t thread_group(pid_t tid) {
  auto status = read_file("/proc/" + std::to_string(tid) + "/status");
  size_t at = status.ok() ? status->find("\nTgid:\t") : std::string::npos;
  return at == std::string::npos ? tid : static_cast<pid_t>(std::atoi(status->c_str() + at + 7));
}

std::mutex g_deferred_mutex;
std::vector<std::pair<pid_t, int>> g_deferred_stops;

long pt(int request, pid_t tid, void* addr, void* data) {
  return ::ptrace(static_cast<enum __ptrace_request>(request), tid, addr, data);
}

// Whether tid is gone or dying: a zombie, or no longer in /proc.
bool task_dead(pid_t tid) {
  auto stat = read_file("/proc/" + std::to_string(tid) + "/stat");
  if (!stat.ok()) return true;
  size_t paren = stat->rfind(')');
  return paren == std::string::npos || paren + 2 >= stat->size() || (*stat)[paren + 2] == 'Z' ||
         (*stat)[paren + 2] == 'X';
}

// A blocking waitpid returns as soon as the task stops, without the
// sched_yield/usleep polling that cost a tiny dump or restore milliseconds
// of CPU (a third of it) and, on a busy machine, gave the CPU to others.
// Since a wait may need to end without a stop (a timeout, a task dying
// unseen), a tick interrupts it: a POSIX timer of this thread raising a
// real-time signal whose handler does nothing, installed without
// SA_RESTART. The timer is periodic, so a tick that lands outside waitpid
// costs at most one period; it is disarmed once the stop is seen.
constexpr int kTickMs = 5;

void on_tick(int) {}

constexpr int tick_signal() { return 64 - 2; }  // SIGRTMAX - 2, clear of glibc's own

// (Installed at each arm: a forked child of cryo may have reset it.)
bool install_tick_handler() {
  struct sigaction sa = {};
  sa.sa_handler = on_tick;
  sigemptyset(&sa.sa_mask);
  return ::sigaction(tick_signal(), &sa, nullptr) == 0;
}

class WaitTick {
 public:
  ~WaitTick() {
    if (made_) ::timer_delete(timer_);
  }
  // Starts the ticks (false if no timer could be made or this thread blocks
  // the signal: then waits poll).
  bool arm() {
    sigset_t blocked;
    if (::pthread_sigmask(SIG_BLOCK, nullptr, &blocked) != 0 || sigismember(&blocked, tick_signal())) return false;
    if (!install_tick_handler()) return false;
    if (!made_) {
      struct sigevent ev = {};
      ev.sigev_notify = SIGEV_THREAD_ID;
      ev.sigev_signo = tick_signal();
      ev._sigev_un._tid = static_cast<pid_t>(::gettid());
      if (::timer_create(CLOCK_MONOTONIC, &ev, &timer_) < 0) return false;
      made_ = true;
    }
    struct itimerspec every = {{0, kTickMs * 1000000L}, {0, kTickMs * 1000000L}};
    return ::timer_settime(timer_, 0, &every, nullptr) == 0;
  }
  void disarm() {
    struct itimerspec off = {};
    (void)::timer_settime(timer_, 0, &off, nullptr);
  }

 private:
  timer_t timer_{};
  bool made_ = false;
};

thread_local WaitTick t_tick;

int64_t now_ms() {
  struct timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// How long wait_task polls for a stop before it sleeps.
constexpr uint64_t kPollStopUs = 100;

// Waits for the next stop of tid; with timeout_ms >= 0, fails with
// ETIMEDOUT when none comes in time (a task in uninterruptible sleep, such as
// a vfork parent, does not stop until it wakes). Without a timeout it still
// notices a task that dies instead of stopping: a killed thread group
// leader is not reported while its other threads wait to be reaped by us.
Result<int> wait_task(pid_t tid, int timeout_ms = -1) {
  int status;
  pid_t r = ::waitpid(tid, &status, __WALL | WNOHANG);
  if (r < 0 && errno != EINTR) return errno_error("waitpid " + who(tid));
  // A stop a moment away (a remote syscall's, most often: the task runs it
  // on another CPU in microseconds) is polled for first, yielding the CPU
  // in case the task waits for this one. Sleeping instead cost each round
  // trip a wake-up of an idle virtual CPU: a tiny dump's dozens of remote
  // syscalls took 2.2-3.0 ms asleep, 1.3-1.6 ms polling.
  if (r != tid) {
    uint64_t until = now_us() + kPollStopUs;
    while (r != tid && now_us() < until) {
      ::sched_yield();
      r = ::waitpid(tid, &status, __WALL | WNOHANG);
      if (r < 0 && errno != EINTR) return errno_error("waitpid " + who(tid));
    }
  }
  if (r != tid) {
    bool ticking = t_tick.arm();
    ScopeGuard stop_ticks([&] {
      if (ticking) t_tick.disarm();
    });
    int64_t start = now_ms();
    for (int round = 0;; round++) {
      r = ::waitpid(tid, &status, ticking ? __WALL : __WALL | WNOHANG);
      if (r == tid) break;
      if (r < 0 && errno != EINTR) return errno_error("waitpid " + who(tid));
      if (timeout_ms >= 0 && now_ms() - start >= timeout_ms)
        return Error(ETIMEDOUT, who(tid) + " did not stop within " + std::to_string(timeout_ms / 1000.0).substr(0, 4) +
                                    " s (it sleeps uninterruptibly, e.g. a vfork parent waiting for its child)");
      if ((ticking || round % 64 == 63) && task_dead(tid)) return Error(ESRCH, who(tid) + " died instead of stopping");
      if (!ticking) ::usleep(200);
    }
  }
  if (WIFEXITED(status) || WIFSIGNALED(status))
    return Error(ESRCH, who(tid) + " exited while being stopped");
  return status;
}

}  // namespace

Status seize(pid_t tid, unsigned options) {
  if (pt(PTRACE_SEIZE, tid, nullptr, reinterpret_cast<void*>(static_cast<uintptr_t>(options))) < 0)
    return errno_error("PTRACE_SEIZE " + who(tid));
  return {};
}

Status interrupt(pid_t tid) {
  if (pt(PTRACE_INTERRUPT, tid, nullptr, nullptr) < 0) return errno_error("PTRACE_INTERRUPT " + who(tid));
  return {};
}

Status interrupt_and_wait(pid_t tid, int timeout_ms) {
  CRYO_TRY(interrupt(tid));
  return wait_interrupt_stop(tid, timeout_ms);
}

Status wait_interrupt_stop(pid_t tid, int timeout_ms) {
  for (;;) {
    CRYO_ASSIGN(int status, wait_task(tid, timeout_ms));
    if (!WIFSTOPPED(status)) continue;
    int event = status >> 16;
    if (event == PTRACE_EVENT_STOP) return {};
    if (event != 0) {
      // Another ptrace event (exec, clone...): let it go on to the interrupt.
      if (pt(PTRACE_CONT, tid, nullptr, nullptr) < 0) return errno_error("PTRACE_CONT " + who(tid));
      continue;
    }
    // A signal arrived before the interrupt: deliver it as the kernel would have.
    int sig = WSTOPSIG(status);
    if (pt(PTRACE_CONT, tid, nullptr, reinterpret_cast<void*>(static_cast<uintptr_t>(sig))) < 0)
      return errno_error("PTRACE_CONT " + who(tid));
  }
}

Status seize_and_stop(pid_t tid, unsigned options, int timeout_ms) {
  CRYO_TRY(seize(tid, options));
  return interrupt_and_wait(tid, timeout_ms);
}

Status detach(pid_t tid, int signal) {
  if (pt(PTRACE_DETACH, tid, nullptr, reinterpret_cast<void*>(static_cast<uintptr_t>(signal))) < 0)
    return errno_error("PTRACE_DETACH " + who(tid));
  return {};
}

Result<user_regs_struct> get_regs(pid_t tid) {
  user_regs_struct regs;
  if (pt(PTRACE_GETREGS, tid, nullptr, &regs) < 0) return errno_error("PTRACE_GETREGS " + who(tid));
  return regs;
}

Status set_regs(pid_t tid, const user_regs_struct& regs) {
  if (pt(PTRACE_SETREGS, tid, nullptr, const_cast<user_regs_struct*>(&regs)) < 0)
    return errno_error("PTRACE_SETREGS " + who(tid));
  return {};
}

Result<std::string> get_xstate(pid_t tid) {
  std::string buf(16384, '\0');
  struct iovec iov = {buf.data(), buf.size()};
  if (pt(PTRACE_GETREGSET, tid, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) < 0)
    return errno_error("PTRACE_GETREGSET NT_X86_XSTATE " + who(tid));
  buf.resize(iov.iov_len);
  return buf;
}

Status set_xstate(pid_t tid, const std::string& xstate) {
  std::string copy = xstate;
  struct iovec iov = {copy.data(), copy.size()};
  if (pt(PTRACE_SETREGSET, tid, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) < 0)
    return errno_error("PTRACE_SETREGSET NT_X86_XSTATE " + who(tid));
  return {};
}

Result<uint64_t> get_sigmask(pid_t tid) {
  uint64_t mask;
  if (pt(PTRACE_GETSIGMASK, tid, reinterpret_cast<void*>(sizeof mask), &mask) < 0)
    return errno_error("PTRACE_GETSIGMASK " + who(tid));
  return mask;
}

Status set_sigmask(pid_t tid, uint64_t mask) {
  if (pt(PTRACE_SETSIGMASK, tid, reinterpret_cast<void*>(sizeof mask), &mask) < 0)
    return errno_error("PTRACE_SETSIGMASK " + who(tid));
  return {};
}

Result<std::vector<std::string>> peek_pending(pid_t tid, bool shared) {
  std::vector<std::string> out;
  for (;;) {
    struct __ptrace_peeksiginfo_args args;
    args.off = out.size();
    args.flags = shared ? PTRACE_PEEKSIGINFO_SHARED : 0;
    args.nr = 32;
    siginfo_t infos[32];
    long n = pt(PTRACE_PEEKSIGINFO, tid, &args, infos);
    if (n < 0) return errno_error("PTRACE_PEEKSIGINFO " + who(tid));
    if (n == 0) break;
    for (long i = 0; i < n; i++) out.emplace_back(reinterpret_cast<const char*>(&infos[i]), sizeof(siginfo_t));
  }
  return out;
}

Result<RseqConfig> get_rseq(pid_t tid) {
  struct {
    uint64_t rseq_abi_pointer;
    uint32_t rseq_abi_size;
    uint32_t signature;
    uint32_t flags;
    uint32_t pad;
  } conf{};
  constexpr int kGetRseqConfiguration = 0x420f;
  if (pt(kGetRseqConfiguration, tid, reinterpret_cast<void*>(sizeof conf), &conf) < 0)
    return errno_error("PTRACE_GET_RSEQ_CONFIGURATION " + who(tid));
  return RseqConfig{conf.rseq_abi_pointer, conf.rseq_abi_size, conf.signature, conf.flags};
}

// PTRACE_{GET,SET}_SYSCALL_USER_DISPATCH_CONFIG (Linux 6.3, newer than
// Debian's headers), whose struct ptrace_sud_config SyscallDispatch is.
constexpr int kSetSyscallDispatch = 0x4210, kGetSyscallDispatch = 0x4211;
static_assert(sizeof(SyscallDispatch) == 32);

Result<SyscallDispatch> get_syscall_dispatch(pid_t tid) {
  SyscallDispatch sud;
  if (pt(kGetSyscallDispatch, tid, reinterpret_cast<void*>(sizeof sud), &sud) == 0) return sud;
  if (errno == EIO) return SyscallDispatch{};  // before Linux 6.3, which cannot tell
  return errno_error("PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG " + who(tid));
}

Status set_syscall_dispatch(pid_t tid, const SyscallDispatch& sud) {
  SyscallDispatch copy = sud;
  if (pt(kSetSyscallDispatch, tid, reinterpret_cast<void*>(sizeof copy), &copy) < 0)
    return errno_error("PTRACE_SET_SYSCALL_USER_DISPATCH_CONFIG " + who(tid));
  return {};
}

user_regs_struct normalize_restart(user_regs_struct regs) {
  constexpr long kRestartSys = 512, kRestartNoIntr = 513, kRestartNoHand = 514, kRestartBlock = 516;
  long rax = static_cast<long>(regs.rax);
  if (static_cast<long>(regs.orig_rax) >= 0 &&
      (rax == -kRestartSys || rax == -kRestartNoIntr || rax == -kRestartNoHand || rax == -kRestartBlock)) {
    regs.rip -= 2;  // back onto the `syscall` instruction
    regs.rax = regs.orig_rax;
  }
  regs.orig_rax = static_cast<unsigned long long>(-1);
  return regs;
}

Status Remote::step_to_syscall_stop() {
  for (;;) {
    if (pt(PTRACE_SYSCALL, tid_, nullptr, nullptr) < 0) return errno_error("PTRACE_SYSCALL " + who(tid_));
    CRYO_ASSIGN(int status, wait_task(tid_));
    if (!WIFSTOPPED(status)) continue;
    if (WSTOPSIG(status) == (SIGTRAP | 0x80)) return {};
    if ((status >> 16) != 0) continue;  // a ptrace event such as PTRACE_EVENT_CLONE
    int sig = WSTOPSIG(status);
    if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU) {
      // SIGSTOP cannot be blocked: suppressed now, raised again once the
      // task is let go (take_deferred_stops).
      std::lock_guard lock(g_deferred_mutex);
      g_deferred_stops.emplace_back(thread_group(tid_), sig);
      continue;
    }
    return Error(EINTR, who(tid_) + ": unexpected signal " + std::to_string(sig) + " during a remote syscall");
  }
}

// Resumes the task (PTRACE_SINGLESTEP or PTRACE_CONT) until it traps with
// its instruction pointer at stop_ip. A stop signal meanwhile is held back:
// SIGSTOP cannot be blocked, so it is suppressed now and raised again once
// the task is let go (take_deferred_stops); any other signal fails.
Result<user_regs_struct> Remote::resume_until(int request, uint64_t stop_ip, const char* what) {
  for (;;) {
    if (pt(request, tid_, nullptr, nullptr) < 0)
      return errno_error(std::string(request == PTRACE_CONT ? "PTRACE_CONT " : "PTRACE_SINGLESTEP ") + who(tid_));
    CRYO_ASSIGN(int status, wait_task(tid_));
    if (!WIFSTOPPED(status)) continue;
    if ((status >> 16) != 0) continue;  // a ptrace event such as PTRACE_EVENT_CLONE
    int sig = WSTOPSIG(status);
    if (sig == SIGTRAP) {
      CRYO_ASSIGN(user_regs_struct after, get_regs(tid_));
      if (after.rip == stop_ip) return after;
      return Error(EINTR, who(tid_) + ": a SIGTRAP came before " + what + " ran");
    }
    if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU) {
      std::lock_guard lock(g_deferred_mutex);
      g_deferred_stops.emplace_back(thread_group(tid_), sig);
      continue;
    }
    return Error(EINTR, who(tid_) + ": unexpected signal " + std::to_string(sig) + " during " + what);
  }
}

// One stop per syscall rather than two (see Stepping): the task steps over
// the `syscall` instruction and traps right after it returns, before any
// other instruction of it runs. Each stop is a round trip through the
// scheduler, which on a busy machine is most of what a remote syscall costs.
Result<user_regs_struct> Remote::step_over_syscall() {
  return resume_until(PTRACE_SINGLESTEP, syscall_ip_ + 2, "a remote syscall");
}

Result<long> Remote::raw(long nr, std::array<uint64_t, 6> args) {
  user_regs_struct regs = base_;
  regs.rip = syscall_ip_;
  regs.rax = static_cast<unsigned long long>(nr);
  regs.orig_rax = static_cast<unsigned long long>(-1);
  regs.rdi = args[0];
  regs.rsi = args[1];
  regs.rdx = args[2];
  regs.r10 = args[3];
  regs.r8 = args[4];
  regs.r9 = args[5];
  CRYO_TRY(set_regs(tid_, regs));
  if (stepping_ == Stepping::kSingleStep) {
    failpoint("remote.syscall");
    CRYO_ASSIGN(user_regs_struct after, step_over_syscall());
    return static_cast<long>(after.rax);
  }
  CRYO_TRY(step_to_syscall_stop());  // entry
  failpoint("remote.syscall");
  CRYO_TRY(step_to_syscall_stop());  // exit
  CRYO_ASSIGN(user_regs_struct after, get_regs(tid_));
  return static_cast<long>(after.rax);
}

// The batch loop of ptrace.h, assembled:
//   loop: test r12, r12; jz done
//         mov rax, [rbx]; mov rdi, [rbx+8]; mov rsi, [rbx+16]; mov rdx, [rbx+24]
//         mov r10, [rbx+32]; mov r8, [rbx+40]; mov r9, [rbx+48]
//         syscall; mov [rbx+56], rax
//         cmp rax, -4095; jae done        (an error: -4095..-1)
//         add rbx, 64; dec r12; jmp loop
//   done: int3
const std::array<uint8_t, 56> kBatchLoop = {
    0x4d, 0x85, 0xe4, 0x74, 0x32, 0x48, 0x8b, 0x03, 0x48, 0x8b, 0x7b, 0x08, 0x48, 0x8b, 0x73, 0x10,
    0x48, 0x8b, 0x53, 0x18, 0x4c, 0x8b, 0x53, 0x20, 0x4c, 0x8b, 0x43, 0x28, 0x4c, 0x8b, 0x4b, 0x30,
    0x0f, 0x05, 0x48, 0x89, 0x43, 0x38, 0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff, 0x73, 0x09, 0x48, 0x83,
    0xc3, 0x40, 0x49, 0xff, 0xcc, 0xeb, 0xc9, 0xcc};

Result<std::vector<long>> Remote::batch(uint64_t loop_ip, uint64_t table, size_t table_bytes,
                                        const std::vector<Call>& calls) {
  std::vector<long> out;
  out.reserve(calls.size());
  size_t per_round = table_bytes / kBatchEntryBytes;
  if (stepping_ != Stepping::kSingleStep || loop_ip == 0 || per_round == 0) {
    for (const auto& c : calls) {
      CRYO_ASSIGN(long ret, call(c.name, c.nr, c.args));
      out.push_back(ret);
    }
    return out;
  }
  constexpr size_t kWords = kBatchEntryBytes / 8;
  std::vector<uint64_t> words;
  for (size_t first = 0; first < calls.size();) {
    size_t n = std::min(per_round, calls.size() - first);
    words.assign(n * kWords, 0);
    for (size_t i = 0; i < n; i++) {
      const Call& c = calls[first + i];
      words[i * kWords] = static_cast<uint64_t>(c.nr);
      std::copy(c.args.begin(), c.args.end(), words.begin() + static_cast<ptrdiff_t>(i * kWords + 1));
    }
    CRYO_TRY(write_memory(tid_, table, words.data(), words.size() * 8));
    user_regs_struct regs = base_;
    regs.rip = loop_ip;
    regs.rbx = table;
    regs.r12 = n;
    regs.orig_rax = static_cast<unsigned long long>(-1);
    CRYO_TRY(set_regs(tid_, regs));
    failpoint("remote.syscall");
    // It runs freely up to the int3 that ends the loop.
    CRYO_ASSIGN(user_regs_struct after, resume_until(PTRACE_CONT, loop_ip + kBatchLoop.size(), "remote syscalls"));
    if (after.r12 > n) return Error(EINVAL, who(tid_) + ": the remote syscall loop ended with a bad count");
    size_t ran = n - after.r12 + (after.r12 ? 1 : 0);  // the one that failed ran too
    CRYO_TRY(read_memory(tid_, table, words.data(), ran * kBatchEntryBytes));
    for (size_t i = 0; i < ran; i++) {
      long ret = static_cast<long>(words[i * kWords + kWords - 1]);
      if (ret < 0 && ret > -4096) return Error(static_cast<int>(-ret), std::string(calls[first + i].name) + " in " + who(tid_));
      out.push_back(ret);
    }
    first += n;
  }
  return out;
}

Result<long> Remote::call(const char* name, long nr, std::array<uint64_t, 6> args) {
  CRYO_ASSIGN(long ret, raw(nr, args));
  if (ret < 0 && ret > -4096) return Error(static_cast<int>(-ret), std::string(name) + " in " + who(tid_));
  return ret;
}

std::vector<std::pair<pid_t, int>> take_deferred_stops() {
  std::lock_guard lock(g_deferred_mutex);
  return std::exchange(g_deferred_stops, {});
}

// Any two bytes 0f 05 in executable memory make a `syscall` when rip points
// at them, whatever instruction they belong to. The vDSO is small and always
// has one; a process that unmapped its vDSO has its libc's (or its own) text.
Result<uint64_t> find_syscall_insn(pid_t pid, const std::vector<proc::MapEntry>& maps) {
  auto search = [&](const proc::MapEntry& m) -> Result<uint64_t> {
    constexpr uint64_t kChunk = 64 * 1024;
    std::string code;
    for (uint64_t at = m.start; at < m.end; at += kChunk) {
      code.resize(std::min(kChunk + 1, m.end - at));  // one byte more: a pair across chunks
      CRYO_TRY(read_memory(pid, at, code.data(), code.size()));
      for (size_t i = 0; i + 1 < code.size(); i++)
        if (static_cast<uint8_t>(code[i]) == 0x0f && static_cast<uint8_t>(code[i + 1]) == 0x05) return at + i;
    }
    return 0;
  };
  for (const auto& m : maps) {
    if (m.path != "[vdso]") continue;
    CRYO_ASSIGN(uint64_t ip, search(m));
    if (ip) return ip;
    return Error(ENOEXEC, "pid " + std::to_string(pid) + ": no syscall instruction in the vDSO");
  }
  for (const auto& m : maps) {
    if (!m.exec || m.path.empty() || m.path[0] != '/') continue;
    auto ip = search(m);
    if (ip.ok() && *ip) return *ip;
  }
  return Error("pid " + std::to_string(pid) + " has no vDSO and no syscall instruction in its code (cannot run "
               "syscalls inside it)");
}

Status read_memory(pid_t pid, uint64_t addr, void* out, size_t size) {
  struct iovec local = {out, size};
  struct iovec remote = {reinterpret_cast<void*>(addr), size};
  ssize_t n = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
  if (n == static_cast<ssize_t>(size)) return {};
  // Pages the task cannot read itself (PROT_NONE): /proc/PID/mem can.
  CRYO_ASSIGN(UniqueFd mem, open_file("/proc/" + std::to_string(pid) + "/mem", O_RDONLY));
  return pread_all(mem.get(), out, size, static_cast<off_t>(addr)).wrap("read memory of pid " + std::to_string(pid));
}

Status write_memory(pid_t pid, uint64_t addr, const void* data, size_t size) {
  struct iovec local = {const_cast<void*>(data), size};
  struct iovec remote = {reinterpret_cast<void*>(addr), size};
  ssize_t n = ::process_vm_writev(pid, &local, 1, &remote, 1, 0);
  if (n == static_cast<ssize_t>(size)) return {};
  CRYO_ASSIGN(UniqueFd mem, open_file("/proc/" + std::to_string(pid) + "/mem", O_WRONLY));
  return pwrite_all(mem.get(), data, size, static_cast<off_t>(addr)).wrap("write memory of pid " + std::to_string(pid));
}

}  // namespace cryo::ptrace
