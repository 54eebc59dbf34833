#include "core/lazy/keeper.h"

#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/sys/fdpass.h"
#include "core/sys/io.h"
#include "core/sys/proc.h"

namespace cryo::lazy {
namespace {

constexpr uint32_t kAdd = 1, kDrop = 2, kPid = 3, kEnd = 4;

struct Message {
  uint32_t kind;
  int32_t id;
  int32_t pid;
};

// Every process below one of roots (by parent pid), roots included.
std::set<pid_t> with_descendants(const std::set<pid_t>& roots) {
  std::map<pid_t, std::vector<pid_t>> children;
  if (DIR* d = ::opendir("/proc")) {
    while (struct dirent* e = ::readdir(d)) {
      pid_t pid = std::atoi(e->d_name);
      if (pid <= 0) continue;
      if (auto stat = proc::read_stat(pid); stat.ok()) children[stat->ppid].push_back(pid);
    }
    ::closedir(d);
  }
  std::set<pid_t> out;
  std::vector<pid_t> next(roots.begin(), roots.end());
  while (!next.empty()) {
    pid_t p = next.back();
    next.pop_back();
    if (!out.insert(p).second) continue;
    for (pid_t c : children[p]) next.push_back(c);
  }
  return out;
}

[[noreturn]] void keeper_main(int sock) {
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT}) ::signal(sig, SIG_IGN);
  ::prctl(PR_SET_NAME, "cryo-lazy-keep");
  std::map<int, int> held;  // id -> userfaultfd
  std::set<pid_t> pids;
  for (;;) {
    Message m{};
    auto got = receive_with_fds(sock, &m, sizeof m);
    if (!got.ok() || got->bytes != sizeof m) break;  // the daemon is gone
    int fd = got->fds.empty() ? -1 : got->fds.front().release();
    if (m.kind == kAdd && fd >= 0) {
      held[m.id] = fd;
      if (m.pid > 0) pids.insert(m.pid);
    } else if (m.kind == kDrop) {
      if (auto it = held.find(m.id); it != held.end()) {
        ::close(it->second);
        held.erase(it);
      }
    } else if (m.kind == kPid && m.pid > 0) {
      pids.insert(m.pid);
    } else if (m.kind == kEnd) {
      _exit(0);
    }
    if (fd >= 0 && m.kind != kAdd) ::close(fd);
  }
  if (held.empty()) _exit(0);  // every process had its memory
  // Memory is missing and nobody will bring it: the processes must not run
  // on (their faults wait on the userfaultfds held here until they die).
  for (int round = 0; round < 3; round++)
    for (pid_t p : with_descendants(pids)) ::kill(p, SIGKILL);
  _exit(1);
}

}  // namespace

Result<Keeper> Keeper::start() {
  int sp[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) return errno_error("socketpair");
  pid_t child = ::fork();
  if (child < 0) return errno_error("fork the keeper");
  if (child == 0) {
    ::close(sp[0]);
    keeper_main(sp[1]);
  }
  ::close(sp[1]);
  Keeper k;
  k.sock_.reset(sp[0]);
  k.pid_ = child;
  return k;
}

void Keeper::send(uint32_t kind, int id, pid_t pid, int fd) {
  if (!sock_) return;
  Message m{kind, id, pid};
  // The keeper going away is seen by its own end of file; nothing to do here.
  (void)send_with_fds(sock_.get(), &m, sizeof m, fd >= 0 ? std::span<const int>(&fd, 1) : std::span<const int>());
}

void Keeper::add(int id, pid_t pid, int uffd) { send(kAdd, id, pid, uffd); }
void Keeper::drop(int id) { send(kDrop, id, 0); }
void Keeper::learned_pid(int id, pid_t pid) { send(kPid, id, pid); }

void Keeper::end() {
  send(kEnd, 0, 0);
  sock_.reset();
  if (pid_ > 0) {
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    pid_ = 0;
  }
}

}  // namespace cryo::lazy
