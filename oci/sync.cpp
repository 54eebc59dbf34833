#include "oci/sync.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

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
  struct msghdr msg = {};
  std::string payload = data.empty() ? std::string("x") : data;
  struct iovec iov = {payload.data(), payload.size()};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
  while (::sendmsg(socket, &msg, MSG_NOSIGNAL) < 0)
    if (errno != EINTR) return errno_error("send descriptor");
  return {};
}

Result<UniqueFd> receive_fd(int socket) {
  struct msghdr msg = {};
  char data[4096];
  struct iovec iov = {data, sizeof data};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  while (::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC) < 0)
    if (errno != EINTR) return errno_error("receive descriptor");
  struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  if (!cmsg || cmsg->cmsg_type != SCM_RIGHTS) return Error(EBADMSG, "no descriptor in message");
  int fd;
  std::memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
  return UniqueFd(fd);
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
