#include "oci/exec.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

#include "core/ns/namespaces.h"
#include "core/sys/io.h"
#include "oci/caps.h"
#include "oci/console.h"
#include "oci/container.h"
#include "oci/process.h"
#include "oci/pty_proxy.h"
#include "oci/state.h"
#include "oci/sync.h"

namespace cryo::oci {
namespace {

const char* const kJoinOrder[] = {"user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount"};

struct NsFd {
  std::string type;
  UniqueFd fd;
};

// The namespaces of pid that differ from ours, opened now so that a dying init cannot swap them.
Result<std::vector<NsFd>> open_namespaces(pid_t pid) {
  std::vector<NsFd> out;
  for (const char* type : kJoinOrder) {
    std::string name = ns::proc_name(type);
    struct stat mine, theirs;
    std::string path = "/proc/" + std::to_string(pid) + "/ns/" + name;
    if (::stat(path.c_str(), &theirs) < 0) {
      if (errno == ENOENT) continue;  // kernel without this namespace type
      return errno_error("stat " + path);
    }
    if (::stat(("/proc/self/ns/" + name).c_str(), &mine) == 0 && mine.st_ino == theirs.st_ino) continue;
    CRYO_ASSIGN(UniqueFd fd, open_file(path, O_RDONLY | O_CLOEXEC));
    out.push_back({type, std::move(fd)});
  }
  return out;
}

const int kForwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};

[[noreturn]] void exec_child(const ExecOptions& o, const ExecPlan& plan, int sync_fd, int console_fd) {
  auto fail = [&](const Error& e) {
    send_error(sync_fd, e.message());
    _exit(127);
  };
  if (::setsid() < 0) fail(errno_error("setsid"));
  if (o.process.terminal) {
    if (console_fd < 0) fail(Error(EINVAL, "exec -t needs --console-socket"));
    if (auto s = setup_console(console_fd, o.process.console_height, o.process.console_width); !s.ok()) fail(s.error());
    ::close(console_fd);
  }
  if (auto s = apply_rlimits(o.process.rlimits); !s.ok()) fail(s.error());
  if (o.process.oom_score_adj)
    if (auto s = set_oom_score_adj(*o.process.oom_score_adj); !s.ok()) fail(s.error());
  Status s = exec_process(plan);
  send_error(sync_fd, s.error().message());
  _exit(127);
}

[[noreturn]] void stage_a(const ExecOptions& o, const ExecPlan& plan, std::vector<NsFd>& namespaces, int sync_fd,
                          int console_fd) {
  // "initial" holds while we enter the container (the cgroup's cpuset may narrow it), "final" at exec.
  if (!o.process.exec_cpu_affinity_initial.empty())
    if (auto s = set_cpu_affinity(o.process.exec_cpu_affinity_initial); !s.ok()) {
      send_error(sync_fd, s.error().message());
      _exit(1);
    }
  if (!wait_go(sync_fd).ok()) _exit(1);
  for (auto& n : namespaces)
    if (auto s = ns::join_fd(n.fd.get(), ns::clone_flag(n.type), n.type + " namespace"); !s.ok()) {
      send_error(sync_fd, s.error().message());
      _exit(1);
    }
  namespaces.clear();
  pid_t pid = ::fork();
  if (pid < 0) {
    send_error(sync_fd, "fork: " + std::string(strerror(errno)));
    _exit(1);
  }
  if (pid == 0) exec_child(o, plan, sync_fd, console_fd);
  (void)send_message(sync_fd, "pid:" + std::to_string(pid));
  _exit(0);
}

}  // namespace

int forward_and_wait(pid_t pid) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : kForwarded) sigaddset(&set, s);
  sigaddset(&set, SIGCHLD);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  for (;;) {
    int status = 0;
    pid_t done;
    while ((done = ::waitpid(-1, &status, WNOHANG)) > 0) {
      if (done == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (done < 0 && errno == ECHILD) return 255;
    siginfo_t info;
    int sig = sigwaitinfo(&set, &info);
    if (sig > 0 && sig != SIGCHLD) ::kill(pid, sig);
  }
}

Result<int> exec_in_container(const ExecOptions& o) {
  CRYO_ASSIGN(ContainerState state, load_state(o.root, o.id));
  if (state.status != ContainerStatus::kRunning && state.status != ContainerStatus::kCreated)
    return Error(EINVAL, "cannot exec in container " + o.id + " in state " + status_name(state.status));
  CRYO_ASSIGN(Spec spec, load_container_spec(o.root, o.id));
  if (o.process.capabilities) log_ignored_capabilities(*o.process.capabilities);
  std::optional<ConsoleListener> listener;
  std::string console_socket = o.console_socket;
  if (o.process.terminal && console_socket.empty()) {
    if (o.detach) return Error(EINVAL, "exec -t -d needs --console-socket");
    CRYO_ASSIGN(ConsoleListener l, ConsoleListener::open());
    listener.emplace(std::move(l));
    console_socket = listener->path();
  }
  CRYO_ASSIGN(auto namespaces, open_namespaces(state.pid));
  CRYO_ASSIGN(auto hierarchies, cgroup::host_hierarchies());
  cgroup::Group group(std::move(hierarchies), state.cgroup_path);
  UniqueFd console;
  if (!console_socket.empty()) {
    CRYO_ASSIGN(console, connect_unix(console_socket).wrap("--console-socket"));
  }
  CRYO_ASSIGN(auto pair, sync_pair());
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) return errno_error("PR_SET_CHILD_SUBREAPER");
  ExecPlan plan{o.process, spec.seccomp, spec.has_namespace("user"), o.preserve_fds, spec.personality_domain};
  pid_t a = ::fork();
  if (a < 0) return errno_error("fork");
  if (a == 0) {
    pair.first.reset();
    stage_a(o, plan, namespaces, pair.second.get(), console.get());
  }
  pair.second.reset();
  console.reset();
  namespaces.clear();
  Status status = group.add_process(a);
  if (status.ok()) status = send_message(pair.first.get(), "go");
  pid_t pid = 0;
  while (status.ok()) {
    auto m = receive_message(pair.first.get());
    if (!m.ok()) status = std::move(m).error();
    else if (m->empty()) break;  // stage A exited and the child exec'd
    else if (m->starts_with("pid:")) pid = std::atoi(m->c_str() + 4);
    else if (m->starts_with("error:")) status = Error(0, m->substr(6));
  }
  pair.first.reset();  // a stage A still waiting for "go" sees EOF and exits
  ::waitpid(a, nullptr, 0);
  if (!status.ok()) {
    if (pid > 0) ::waitpid(pid, nullptr, 0);
    return std::move(status).error().wrap("exec in container " + o.id);
  }
  if (pid <= 0) return Error(EPROTO, "exec in container " + o.id + ": no process was started");
  if (!o.pid_file.empty()) CRYO_TRY(write_file_atomic(o.pid_file, std::to_string(pid)).wrap("--pid-file"));
  if (o.detach) return 0;
  if (listener) {
    CRYO_ASSIGN(UniqueFd master, listener->receive_master());
    return proxy_and_wait(pid, master.get());
  }
  return forward_and_wait(pid);
}

}  // namespace cryo::oci
