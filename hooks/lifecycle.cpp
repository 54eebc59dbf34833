#include "hooks/lifecycle.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

#include "core/sys/fd.h"
#include "core/sys/io.h"

namespace cryo::hooks {
namespace {

int64_t now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

[[noreturn]] void exec_hook(const HookCommand& hook, int stdin_fd, int mount_ns_fd) {
  if (mount_ns_fd >= 0 && ::setns(mount_ns_fd, CLONE_NEWNS) < 0) _exit(126);
  ::dup2(stdin_fd, 0);
  std::vector<std::string> args = hook.args.empty() ? std::vector<std::string>{hook.path} : hook.args;
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (auto& e : hook.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  ::execve(hook.path.c_str(), argv.data(), envp.data());
  _exit(127);
}

}  // namespace

Status run_hook(const HookCommand& hook, const std::string& state_json, const RunOptions& options) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) < 0) return errno_error("pipe");
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  pid_t pid = ::fork();
  if (pid < 0) return errno_error("fork hook " + hook.path);
  if (pid == 0) exec_hook(hook, read_end.get(), options.mount_ns_fd);
  read_end.reset();
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  UniqueFd owned_pidfd(pidfd);
  // A hook that does not read its stdin must not block us: ignore EPIPE.
  struct sigaction ignore {}, old {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, &old);
  (void)write_all(write_end.get(), state_json);
  ::sigaction(SIGPIPE, &old, nullptr);
  write_end.reset();

  int64_t deadline = hook.timeout_seconds ? now_ms() + *hook.timeout_seconds * 1000LL : -1;
  bool timed_out = false;
  if (pidfd >= 0) {
    for (;;) {
      int wait_ms = deadline < 0 ? -1 : static_cast<int>(std::max<int64_t>(0, deadline - now_ms()));
      struct pollfd p = {pidfd, POLLIN, 0};
      int n = ::poll(&p, 1, wait_ms);
      if (n < 0 && errno == EINTR) continue;
      if (n == 0) {
        timed_out = true;
        ::kill(pid, SIGKILL);
      }
      break;
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) return Error(ETIMEDOUT, "hook " + hook.path + " timed out after " + std::to_string(*hook.timeout_seconds) + "s");
  if (WIFSIGNALED(status)) return Error(0, "hook " + hook.path + " killed by signal " + std::to_string(WTERMSIG(status)));
  if (WEXITSTATUS(status) == 127) return Error(ENOENT, "hook " + hook.path + " could not be executed");
  if (WEXITSTATUS(status) != 0) return Error(0, "hook " + hook.path + " exited with status " + std::to_string(WEXITSTATUS(status)));
  return {};
}

Status run_hooks(const std::vector<HookCommand>& hooks, const std::string& stage, const std::string& state_json,
                 const RunOptions& options) {
  for (auto& h : hooks) CRYO_TRY(run_hook(h, state_json, options).wrap(stage + " hook"));
  return {};
}

}  // namespace cryo::hooks
