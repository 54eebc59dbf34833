#include "oci/pty_proxy.h"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "oci/sync.h"

namespace cryo::oci {

Result<ConsoleListener> ConsoleListener::open() {
  ConsoleListener l;
  char tmpl[] = "/tmp/cryo-console-XXXXXX";
  if (!::mkdtemp(tmpl)) return errno_error("mkdtemp");
  l.dir_ = tmpl;
  l.path_ = l.dir_ + "/console.sock";
  l.socket_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!l.socket_) return errno_error("socket");
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, l.path_.c_str(), sizeof addr.sun_path - 1);
  if (::bind(l.socket_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) return errno_error("bind " + l.path_);
  if (::listen(l.socket_.get(), 1) < 0) return errno_error("listen " + l.path_);
  return l;
}

ConsoleListener::~ConsoleListener() {
  if (!path_.empty()) ::unlink(path_.c_str());
  if (!dir_.empty()) ::rmdir(dir_.c_str());
}

Result<UniqueFd> ConsoleListener::receive_master() {
  UniqueFd conn(::accept4(socket_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!conn) return errno_error("accept on " + path_);
  return receive_fd(conn.get());
}

namespace {

void copy_window_size(int from, int to) {
  struct winsize ws;
  if (::ioctl(from, TIOCGWINSZ, &ws) == 0) ::ioctl(to, TIOCSWINSZ, &ws);
}

// Writes everything (the pty may take it in pieces).
void write_fully(int fd, const char* data, ssize_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, static_cast<size_t>(size));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data += n;
    size -= n;
  }
}

}  // namespace

int proxy_and_wait(pid_t pid, int master) {
  bool tty = ::isatty(0);
  struct termios saved {};
  if (tty && ::tcgetattr(0, &saved) == 0) {
    struct termios raw = saved;
    ::cfmakeraw(&raw);
    ::tcsetattr(0, TCSANOW, &raw);
    copy_window_size(0, master);
  }
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGWINCH, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) sigaddset(&set, s);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  int sfd = ::signalfd(-1, &set, SFD_CLOEXEC);
  bool stdin_open = true, master_open = true;
  int code = -1;
  char buf[8192];
  while (code < 0 || master_open) {
    struct pollfd fds[3] = {{sfd, POLLIN, 0}, {master, master_open ? short(POLLIN) : short(0), 0},
                            {0, stdin_open && master_open ? short(POLLIN) : short(0), 0}};
    // Once the process is gone, drain what the pty still holds, then stop.
    int n = ::poll(fds, 3, code >= 0 ? 100 : -1);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) break;
    if (fds[0].revents & POLLIN) {
      struct signalfd_siginfo info;
      if (::read(sfd, &info, sizeof info) == sizeof info) {
        if (info.ssi_signo == SIGWINCH && tty) copy_window_size(0, master);
        else if (info.ssi_signo != SIGCHLD) ::kill(pid, static_cast<int>(info.ssi_signo));
      }
      int status;
      pid_t done;
      while ((done = ::waitpid(-1, &status, WNOHANG)) > 0)
        if (done == pid) code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t r = ::read(master, buf, sizeof buf);
      if (r > 0) write_fully(1, buf, r);
      else if (r < 0 && errno == EINTR) continue;
      else master_open = false;  // EIO: every slave fd is closed
    }
    if (fds[2].revents & (POLLIN | POLLHUP)) {
      ssize_t r = ::read(0, buf, sizeof buf);
      if (r > 0) write_fully(master, buf, r);
      else if (r == 0) stdin_open = false;
    }
  }
  if (code < 0) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  if (tty) ::tcsetattr(0, TCSANOW, &saved);
  ::close(sfd);
  return code;
}

}  // namespace cryo::oci
