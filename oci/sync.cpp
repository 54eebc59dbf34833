#include "oci/sync.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include "core/sys/fdpass.h"

namespace cryo::oci {

Result<std::pair<UniqueFd, UniqueFd>> sync_pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) < 0) return errno_error("socketpair");
  return std::make_pair(UniqueFd(fds[0]), UniqueFd(fds[1]));
}

Status send_message(int fd, const std::string& message) {
  for (;;) {
    if (::send(fd, message.data(), message.size(), MSG_NOSIGNAL) >= 0) return {};
    if (errno != EINTR) return errno_error("send '" + message.substr(0, 16) + "'");
  }
}

Result<std::string> receive_message(int fd) {
  char buf[16384];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n >= 0) return std::string(buf, static_cast<size_t>(n));
    if (errno != EINTR) return errno_error("receive");
  }
}

void send_error(int fd, const std::string& text) { (void)send_message(fd, "error:" + text); }

Status wait_go(int fd) {
  CRYO_ASSIGN(std::string m, receive_message(fd));
  if (m == "go") return {};
  if (m.empty()) return Error(EPIPE, "the runtime went away");
  return Error(ECANCELED, "the runtime said: " + m);
}

Status send_fd(int socket, int fd, const std::string& data) {
  std::string payload = data.empty() ? std::string("x") : data;
  CRYO_TRY(send_with_fds(socket, payload.data(), payload.size(), std::span<const int>(&fd, 1)).wrap("send descriptor"));
  return {};
}

Result<UniqueFd> receive_fd(int socket) {
  char data[4096];
  CRYO_ASSIGN(Received got, receive_with_fds(socket, data, sizeof data).wrap("receive descriptor"));
  if (got.fds.empty()) return Error(EBADMSG, "no descriptor in message");
  return std::move(got.fds.front());
}

Result<UniqueFd> connect_unix(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("socket");
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return Error(ENAMETOOLONG, "console socket path " + path);
  std::strcpy(addr.sun_path, path.c_str());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) return errno_error("connect " + path);
  return fd;
}

}  // namespace cryo::oci
