#include "core/sys/fdpass.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace cryo {

namespace {

union Control {
  char buf[CMSG_SPACE(kMaxPassedFds * sizeof(int))];
  struct cmsghdr align;
};

}  // namespace

Result<size_t> send_with_fds(int sock, const void* data, size_t size, std::span<const int> fds, int flags) {
  if (fds.size() > kMaxPassedFds) return Error(E2BIG, std::to_string(fds.size()) + " descriptors in one message");
  struct iovec iov = {const_cast<void*>(data), size};
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  Control control{};
  if (!fds.empty()) {
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
    struct cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(cm), fds.data(), fds.size() * sizeof(int));
  }
  for (;;) {
    ssize_t n = ::sendmsg(sock, &msg, flags);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) return errno_error("sendmsg");
  }
}

Result<Received> receive_with_fds(int sock, void* data, size_t size, int flags) {
  struct iovec iov = {data, size};
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  Control control{};
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  ssize_t n;
  while ((n = ::recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC)) < 0)
    if (errno != EINTR) return errno_error("recvmsg");
  Received got;
  got.bytes = static_cast<size_t>(n);
  for (struct cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
      got.fds.emplace_back(fd);
    }
  }
  // The kernel drops what did not fit: the message is no longer whole.
  if (msg.msg_flags & MSG_CTRUNC) return Error(EPROTO, "more descriptors than a message of cryo's carries");
  return got;
}

Status send_all(int sock, const void* data, size_t size, const char* what, std::span<const int> fds) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    auto sent = send_with_fds(sock, p, size, fds);
    if (!sent.ok()) return Error(sent.error().code(), what);
    if (*sent == 0) return Error(EPIPE, what);
    fds = {};  // the descriptors went with the first part
    p += *sent;
    size -= *sent;
  }
  return {};
}

Result<Received> receive_all(int sock, void* data, size_t size) {
  Received all;
  auto* p = static_cast<char*>(data);
  while (all.bytes < size) {
    CRYO_ASSIGN(Received part, receive_with_fds(sock, p + all.bytes, size - all.bytes));
    if (part.bytes == 0) break;
    all.bytes += part.bytes;
    for (auto& fd : part.fds) all.fds.push_back(std::move(fd));
  }
  return all;
}

Result<UniqueFd> copy_fd(pid_t pid, int fd) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd.valid()) return errno_error("pidfd_open " + std::to_string(pid));
  UniqueFd copy(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
  if (!copy.valid()) return errno_error("pidfd_getfd");
  return copy;
}

}  // namespace cryo
