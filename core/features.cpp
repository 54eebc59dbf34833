#include "core/features.h"

#include "core/mm/tracking.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "core/ptrace/ptrace.h"
#include "core/sys/kernel_abi.h"
#include "core/sys/io.h"
#include "core/sys/proc.h"

namespace cryo {
namespace {

Feature check(const std::string& name, bool required, bool present, const std::string& detail = "") {
  return Feature{name, required, present, present ? "" : detail};
}

// A child stopped under ptrace, for the probes that need a tracee.
struct Tracee {
  pid_t pid = -1;
  Tracee() {
    pid = ::fork();
    if (pid == 0) {
      ::pause();
      ::_exit(0);
    }
  }
  ~Tracee() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

}  // namespace

std::vector<Feature> probe_features() {
  std::vector<Feature> out;
  {
    Tracee t;
    bool seized = t.pid > 0 && ptrace::seize_and_stop(t.pid, PTRACE_O_TRACESYSGOOD).ok();
    out.push_back(check("ptrace seize/interrupt", true, seized, "PTRACE_SEIZE failed"));
    out.push_back(check("ptrace rseq configuration", true, seized && ptrace::get_rseq(t.pid).ok(),
                        "PTRACE_GET_RSEQ_CONFIGURATION (Linux 5.13)"));
    out.push_back(check("ptrace siginfo peek", true, seized && ptrace::peek_pending(t.pid, true).ok(),
                        "PTRACE_PEEKSIGINFO"));
    out.push_back(check("ptrace xstate regset", true, seized && ptrace::get_xstate(t.pid).ok(), "NT_X86_XSTATE"));
  }
  long clone3 = ::syscall(SYS_clone3, nullptr, 0);
  out.push_back(check("clone3 with set_tid", true, clone3 < 0 && errno == EINVAL, "clone3 (Linux 5.5)"));
  bool cap_restore = false;
  if (auto st = proc::read_status(::getpid()); st.ok())
    cap_restore = (st->cap_eff & (1ULL << 21)) || (st->cap_eff & (1ULL << 40));
  out.push_back(check("CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE", true, cap_restore, "run cryo as root"));
  unsigned int mm_map_size = 0;
  out.push_back(check("prctl PR_SET_MM_MAP", true,
                      ::prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, &mm_map_size, 0, 0) == 0 && mm_map_size > 0,
                      "CONFIG_CHECKPOINT_RESTORE"));
  out.push_back(check("kcmp", true, ::syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, 0, 0) >= 0, "CONFIG_KCMP"));
  char probe = 'x', copy = 0;
  struct iovec l = {&copy, 1}, r = {&probe, 1};
  out.push_back(check("process_vm_readv", true, ::process_vm_readv(getpid(), &l, 1, &r, 1, 0) == 1));
  out.push_back(check("/proc/PID/task/TID/children", true,
                      ::access(("/proc/self/task/" + std::to_string(getpid()) + "/children").c_str(), R_OK) == 0,
                      "CONFIG_PROC_CHILDREN"));
  out.push_back(check("/proc/PID/pagemap", true, ::access("/proc/self/pagemap", R_OK) == 0));
  bool map_files = false;
  // Only file mappings have an entry: probe the first of them (not simply the
  // first mapping, which under ASan is its anonymous shadow).
  if (auto maps = read_file("/proc/self/maps"); maps.ok())
    if (auto entries = proc::parse_maps(*maps); entries.ok())
      for (const auto& m : *entries)
        if (m.path.starts_with("/")) {
          char range[64];
          snprintf(range, sizeof range, "%lx-%lx", static_cast<unsigned long>(m.start), static_cast<unsigned long>(m.end));
          map_files = ::access((std::string("/proc/self/map_files/") + range).c_str(), F_OK) == 0;
          break;
        }
  out.push_back(check("/proc/PID/map_files", true, map_files));
  bool sealed = false;
  if (auto smaps = read_file("/proc/self/smaps"); smaps.ok()) {
    size_t vdso = smaps->find("[vdso]");
    if (vdso != std::string::npos) {
      size_t flags = smaps->find("VmFlags:", vdso);
      size_t eol = smaps->find('\n', flags);
      sealed = flags != std::string::npos && smaps->substr(flags, eol - flags).find(" sl") != std::string::npos;
    }
  }
  out.push_back(check("vDSO can be moved (not sealed)", true, !sealed, "CONFIG_MSEAL_SYSTEM_MAPPINGS seals the vDSO"));
  out.push_back(check("userfaultfd", false, ::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK) >= 0 || errno != ENOSYS));
  int sock = ::socket(AF_INET, SOCK_STREAM, 0);
  int on = 1;
  bool repair = sock >= 0 && ::setsockopt(sock, IPPROTO_TCP, TCP_REPAIR, &on, sizeof on) == 0;
  if (sock >= 0) ::close(sock);
  out.push_back(check("TCP_REPAIR", false, repair, "needs CAP_NET_ADMIN"));
  out.push_back(check("POSIX timers with given ids", false,
                      ::prctl(abi::kPrTimerCreateRestoreIds, 2, 0, 0, 0) >= 0,
                      "PR_TIMER_CREATE_RESTORE_IDS (Linux 6.17): processes with timer_create timers cannot be restored"));
  out.push_back(check("eventfd semaphore flag in fdinfo", false, [] {
    int fd = ::eventfd(0, EFD_CLOEXEC);
    if (fd < 0) return false;
    auto text = read_file("/proc/self/fdinfo/" + std::to_string(fd));
    ::close(fd);
    return text.ok() && text->find("eventfd-semaphore") != std::string::npos;
  }(), "Linux 6.6: eventfds cannot be dumped"));
  out.push_back(check("cgroup v1 freezer", false, ::access("/sys/fs/cgroup/freezer", F_OK) == 0));
  std::string why;
  auto tracking = mm::probe_write_tracking(&why);
  out.push_back(check("write tracking (userfaultfd WP_ASYNC + PAGEMAP_SCAN)", false, tracking.ok() && *tracking,
                      (tracking.ok() ? why : tracking.error().message()) + ": pre-dump cannot track writes"));
  return out;
}

}  // namespace cryo
