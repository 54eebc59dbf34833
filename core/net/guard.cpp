#include "core/net/guard.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/net/netlock.h"
#include "core/sys/log.h"

namespace cryo::net {
namespace {

constexpr int kFirstSocket = 3;

}  // namespace

LockGuard& LockGuard::operator=(LockGuard&& other) noexcept {
  if (this != &other) {
    release();
    pid_ = std::exchange(other.pid_, -1);
    life_ = std::exchange(other.life_, -1);
  }
  return *this;
}

Result<LockGuard> LockGuard::start(const std::string& method, const std::string& table,
                                   const std::vector<int>& sockets) {
  // A socket pair rather than a pipe: cryo's word is sent with MSG_NOSIGNAL, so
  // a guard that died early cannot take cryo down with SIGPIPE.
  int life[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, life) < 0) return errno_error("socketpair");
  // Everything the child needs is made before fork: it only moves fds and execs.
  std::vector<std::string> words = {"cryo", "network-guard", method.empty() ? "-" : method,
                                    table.empty() ? "-" : table, std::to_string(sockets.size())};
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  int n = static_cast<int>(sockets.size());
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(life[0]);
    ::close(life[1]);
    return errno_error("fork the network guard");
  }
  if (pid == 0) {
    // Out of the way first (above anything in use), then into place: the
    // sockets at 3.., the pipe's read end after them.
    int high = 1024 + n + 8;
    for (int i = 0; i < n; i++)
      if (::fcntl(sockets[static_cast<size_t>(i)], F_DUPFD, high + i) != high + i) ::_exit(127);
    if (::fcntl(life[0], F_DUPFD, high + n) != high + n) ::_exit(127);
    for (int i = 0; i <= n; i++)
      if (::dup2(high + i, kFirstSocket + i) < 0) ::_exit(127);
    ::syscall(SYS_close_range, kFirstSocket + n + 1, ~0U, 0);
    ::setsid();  // a Ctrl-C meant for cryo does not reach the guard
    ::execv("/proc/self/exe", argv.data());
    ::_exit(127);
  }
  ::close(life[0]);
  LockGuard guard;
  guard.pid_ = pid;
  guard.life_ = life[1];
  return guard;
}

void LockGuard::release() {
  if (life_ < 0) return;
  (void)!::send(life_, "d", 1, MSG_NOSIGNAL);
  ::close(life_);
  life_ = -1;
  while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

int run_lock_guard(const std::string& method, const std::string& table, int count) {
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) ::signal(sig, SIG_IGN);
  int life = kFirstSocket + count;
  char word;
  ssize_t got;
  do {
    got = ::recv(life, &word, 1, 0);
  } while (got < 0 && errno == EINTR);
  if (got == 1) return 0;  // cryo took care of it
  // cryo died: the tree runs on, so its connections must work again.
  for (int fd = kFirstSocket; fd < kFirstSocket + count; fd++) {
    int repair = 0;
    socklen_t len = sizeof repair;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &repair, &len) == 0 && repair) {
      int off = 0;
      ::setsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &off, sizeof off);
    }
  }
  if (table != "-") {
    auto st = unlock_connections(table, method);
    if (!st.ok()) {
      log::error("network guard: " + st.error().message());
      return 1;
    }
  }
  return 0;
}

}  // namespace cryo::net
