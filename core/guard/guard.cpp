#include "core/guard/guard.h"

#include <fcntl.h>
#include <poll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>

#include "core/net/netlock.h"
#include "core/ptrace/ptrace.h"
#include "core/sys/log.h"

namespace cryo {
namespace {

constexpr int kFirstSocket = 3;

enum Kind : uint32_t { kProcess = 1, kParking = 2, kUnparked = 3, kFinishOnDeath = 4, kDone = 5 };

// One word of cryo's to the guard; a pidfd rides along with kProcess.
struct Message {
  uint32_t kind;
  int32_t tid;
  uint64_t ip;
  uint64_t mask;
  user_regs_struct regs;
};

struct Parked {
  uint64_t ip;
  uint64_t mask;
  user_regs_struct regs;
};

// Reads one message (and the fd passed with it); false at end of file.
bool receive(int fd, Message* m, int* passed) {
  *passed = -1;
  char control[CMSG_SPACE(sizeof(int))];
  size_t got = 0;
  while (got < sizeof *m) {
    struct iovec iov = {reinterpret_cast<char*>(m) + got, sizeof *m - got};
    struct msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) std::memcpy(passed, CMSG_DATA(c), sizeof(int));
    got += static_cast<size_t>(n);
  }
  return true;
}

void set_repair(int fd, int on) {
  int now = 0;
  socklen_t len = sizeof now;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &now, &len) == 0 && now != on)
    ::setsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &on, sizeof on);
}

// A parked thread sits in pause() at park_ip with every signal blocked (or
// has not yet run the syscall): it gets its own registers back. A thread
// seen elsewhere ran on before it was parked: only its mask is ours.
void give_back(pid_t tid, const Parked& p) {
  if (!ptrace::seize(tid, 0).ok()) return;  // gone
  if (ptrace::interrupt_and_wait(tid, 2000).ok()) {
    auto regs = ptrace::get_regs(tid);
    bool parked = regs.ok() && ((regs->rip == p.ip + 2 && regs->orig_rax == SYS_pause) ||
                                (regs->rip == p.ip && regs->rax == SYS_pause));
    if (parked) (void)ptrace::set_regs(tid, p.regs);
    // cryo blocked everything it could (the kernel keeps SIGKILL and SIGSTOP
    // out of any mask).
    constexpr uint64_t kAllBlocked = ~0ULL & ~((1ULL << (SIGKILL - 1)) | (1ULL << (SIGSTOP - 1)));
    auto mask = ptrace::get_sigmask(tid);
    if (mask.ok() && *mask == kAllBlocked) (void)ptrace::set_sigmask(tid, p.mask);
  }
  (void)ptrace::detach(tid);
}

}  // namespace

Guard& Guard::operator=(Guard&& other) noexcept {
  if (this != &other) {
    release();
    pid_ = std::exchange(other.pid_, -1);
    life_ = std::exchange(other.life_, -1);
    tools_ = std::exchange(other.tools_, -1);
  }
  return *this;
}

Result<Guard> Guard::start(const std::string& method, const std::string& table, const std::vector<int>& sockets,
                           const std::string& commit_marker) {
  struct stat marker{};
  if (commit_marker.empty() || ::stat(commit_marker.c_str(), &marker) < 0) marker.st_ino = 0;
  // A socket pair rather than a pipe: it carries pidfds, and cryo's words
  // are sent with MSG_NOSIGNAL, so a guard that died early cannot take cryo
  // down with SIGPIPE.
  int life[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, life) < 0) return errno_error("socketpair");
  // The lock tools cryo runs (nft, iptables) hold the write end of this
  // pipe: its end of file tells the guard that none of them is still at work.
  int tools[2];
  if (::pipe2(tools, O_CLOEXEC) < 0) {
    ::close(life[0]);
    ::close(life[1]);
    return errno_error("pipe2");
  }
  // Everything the child needs is made before fork: it only moves fds and execs.
  std::vector<std::string> words = {"cryo", "guard", method.empty() ? "-" : method, table.empty() ? "-" : table,
                                    std::to_string(sockets.size()), commit_marker.empty() ? "-" : commit_marker,
                                    std::to_string(marker.st_ino)};
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  int n = static_cast<int>(sockets.size());
  pid_t pid = ::fork();
  if (pid < 0) {
    for (int fd : {life[0], life[1], tools[0], tools[1]}) ::close(fd);
    return errno_error("fork the guard");
  }
  if (pid == 0) {
    // Out of the way first (above anything in use), then into place: the
    // sockets at 3.., the socket pair's end after them, the tools' pipe last.
    int high = 1024 + n + 8;
    for (int i = 0; i < n; i++)
      if (::fcntl(sockets[static_cast<size_t>(i)], F_DUPFD, high + i) != high + i) ::_exit(127);
    if (::fcntl(life[0], F_DUPFD, high + n) != high + n) ::_exit(127);
    if (::fcntl(tools[0], F_DUPFD, high + n + 1) != high + n + 1) ::_exit(127);
    for (int i = 0; i <= n + 1; i++)
      if (::dup2(high + i, kFirstSocket + i) < 0) ::_exit(127);
    ::syscall(SYS_close_range, kFirstSocket + n + 2, ~0U, 0);
    ::setsid();  // a Ctrl-C meant for cryo does not reach the guard
    ::execv("/proc/self/exe", argv.data());
    ::_exit(127);
  }
  ::close(life[0]);
  ::close(tools[0]);
  Guard guard;
  guard.pid_ = pid;
  guard.life_ = life[1];
  guard.tools_ = tools[1];
  net::lock_tools_hold(tools[1]);
  return guard;
}

Status Guard::send(uint32_t kind, pid_t tid, uint64_t ip, const user_regs_struct* regs, uint64_t mask, int pass_fd) {
  if (life_ < 0) return {};
  Message m{};
  m.kind = kind;
  m.tid = tid;
  m.ip = ip;
  m.mask = mask;
  if (regs) m.regs = *regs;
  struct iovec iov = {&m, sizeof m};
  struct msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  char control[CMSG_SPACE(sizeof(int))] = {};
  if (pass_fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
  }
  ssize_t n;
  do {
    n = ::sendmsg(life_, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(sizeof m)) return errno_error("telling the guard");
  return {};
}

Status Guard::add_process(pid_t pid) {
  if (life_ < 0) return {};
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return errno_error("pidfd_open " + std::to_string(pid));
  Status st = send(kProcess, pid, 0, nullptr, 0, pidfd);
  ::close(pidfd);
  return st;
}

Status Guard::parking(pid_t tid, uint64_t park_ip, const user_regs_struct& regs, uint64_t mask) {
  return send(kParking, tid, park_ip, &regs, mask);
}

Status Guard::unparked(pid_t tid) { return send(kUnparked, tid, 0, nullptr, 0); }

Status Guard::finish_on_death() { return send(kFinishOnDeath, 0, 0, nullptr, 0); }

void Guard::release() {
  if (life_ < 0) return;
  (void)send(kDone, 0, 0, nullptr, 0);
  ::close(life_);
  life_ = -1;
  net::lock_tools_hold(-1);
  ::close(tools_);
  tools_ = -1;
  while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

int run_guard(const std::string& method, const std::string& table, int count, const std::string& commit_marker,
              uint64_t marker_inode) {
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) ::signal(sig, SIG_IGN);
  int life = kFirstSocket + count;
  std::vector<int> pidfds;
  std::map<pid_t, Parked> parked;
  bool finish = false;
  Message m;
  int passed;
  while (receive(life, &m, &passed)) {
    switch (m.kind) {
      case kProcess:
        if (passed >= 0) pidfds.push_back(passed);
        break;
      case kParking:
        parked[m.tid] = Parked{m.ip, m.mask, m.regs};
        break;
      case kUnparked:
        parked.erase(m.tid);
        break;
      case kFinishOnDeath:
        finish = true;
        break;
      case kDone:
        return 0;  // cryo took care of it
      default:
        break;
    }
    if (passed >= 0 && m.kind != kProcess) ::close(passed);
  }
  // cryo died after the job was done but before it said so: a new inventory
  // renamed into place means the image is complete.
  struct stat marker;
  if (!finish && commit_marker != "-" && ::stat(commit_marker.c_str(), &marker) == 0 && marker.st_ino != marker_inode)
    finish = true;
  if (finish) {
    // The image is complete (or a restore was letting its tree go): the
    // tree dies as planned, its connections close silently, the lock stays.
    for (int fd : pidfds) ::syscall(SYS_pidfd_send_signal, fd, SIGKILL, nullptr, 0);
    for (int fd = kFirstSocket; fd < kFirstSocket + count; fd++) set_repair(fd, 1);
    return 0;
  }
  // cryo died in the middle: the tree runs on, so its connections must work
  // again before any of its parked threads runs.
  for (int fd = kFirstSocket; fd < kFirstSocket + count; fd++) set_repair(fd, 0);
  // A lock tool of cryo's may still be putting the lock in place: wait for
  // the end of file of the pipe every one of them holds (bounded, should a
  // tool hang).
  struct pollfd tools = {kFirstSocket + count + 1, POLLIN, 0};
  for (char sink[64]; ::poll(&tools, 1, 10000) > 0 && ::read(tools.fd, sink, sizeof sink) > 0;) {
  }
  int code = 0;
  if (table != "-") {
    auto st = net::unlock_connections(table, method);
    if (!st.ok()) {
      log::error("guard: " + st.error().message());
      code = 1;
    }
  }
  for (const auto& [tid, p] : parked) give_back(tid, p);
  return code;
}

}  // namespace cryo
