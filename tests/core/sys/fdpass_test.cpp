#include "core/sys/fdpass.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include <doctest/doctest.h>

using namespace cryo;

namespace {

struct Pair {
  UniqueFd a, b;
  explicit Pair(int type) {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) == 0);
    a.reset(fds[0]);
    b.reset(fds[1]);
  }
};

// The pipe's read end that fd is, told by what a write to `write_end` shows.
bool same_pipe(int read_fd, int write_end) {
  if (::write(write_end, "p", 1) != 1) return false;
  char c = 0;
  return ::read(read_fd, &c, 1) == 1 && c == 'p';
}

}  // namespace

TEST_CASE("a message carries its descriptors, which arrive close-on-exec") {
  Pair sp(SOCK_SEQPACKET);
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  UniqueFd r(pipe_fds[0]), w(pipe_fds[1]);
  const int fds[] = {r.get(), w.get()};
  auto sent = send_with_fds(sp.a.get(), "hello", 5, fds);
  REQUIRE(sent.ok());
  CHECK(*sent == 5);

  char buf[16] = {};
  auto got = receive_with_fds(sp.b.get(), buf, sizeof buf);
  REQUIRE(got.ok());
  CHECK(got->bytes == 5);
  CHECK(std::memcmp(buf, "hello", 5) == 0);
  REQUIRE(got->fds.size() == 2);
  CHECK((::fcntl(got->fds[0].get(), F_GETFD) & FD_CLOEXEC) != 0);
  CHECK(same_pipe(got->fds[0].get(), w.get()));
  CHECK(same_pipe(r.get(), got->fds[1].get()));
}

TEST_CASE("a plain message has no descriptors; end of file is zero bytes") {
  Pair sp(SOCK_SEQPACKET);
  REQUIRE(send_with_fds(sp.a.get(), "x", 1, {}).ok());
  char c;
  auto got = receive_with_fds(sp.b.get(), &c, 1);
  REQUIRE(got.ok());
  CHECK(got->bytes == 1);
  CHECK(got->fds.empty());
  sp.a.reset();
  got = receive_with_fds(sp.b.get(), &c, 1);
  REQUIRE(got.ok());
  CHECK(got->bytes == 0);
}

TEST_CASE("more descriptors than a message of cryo's carries are refused on both sides") {
  Pair sp(SOCK_SEQPACKET);
  std::vector<int> many(kMaxPassedFds + 1, sp.a.get());
  auto sent = send_with_fds(sp.a.get(), "x", 1, many);
  REQUIRE_FALSE(sent.ok());
  CHECK(sent.error().code() == E2BIG);

  // A sender that is not cryo's: the receiver sees the truncation, not a message missing some.
  struct iovec iov = {const_cast<char*>("x"), 1};
  union {
    char buf[CMSG_SPACE((kMaxPassedFds + 1) * sizeof(int))];
    struct cmsghdr align;
  } control{};
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  struct cmsghdr* cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(many.size() * sizeof(int));
  std::memcpy(CMSG_DATA(cm), many.data(), many.size() * sizeof(int));
  REQUIRE(::sendmsg(sp.a.get(), &msg, 0) == 1);
  char c;
  auto got = receive_with_fds(sp.b.get(), &c, 1);
  REQUIRE_FALSE(got.ok());
  CHECK(got.error().code() == EPROTO);
}

TEST_CASE("a stream takes a message larger than its buffer whole, its descriptor with the first part") {
  Pair sp(SOCK_STREAM);
  int small = 4096;
  REQUIRE(::setsockopt(sp.a.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  UniqueFd r(pipe_fds[0]), w(pipe_fds[1]);
  std::string message(1 << 20, '\0');
  for (size_t i = 0; i < message.size(); i++) message[i] = static_cast<char>(i * 7 + i / 4096);
  const int fd = r.get();
  pid_t sender = ::fork();
  REQUIRE(sender >= 0);
  if (sender == 0) {
    bool ok = send_all(sp.a.get(), message.data(), message.size(), "sending", std::span<const int>(&fd, 1)).ok();
    _exit(ok ? 0 : 1);
  }
  std::string in(message.size(), '\0');
  auto got = receive_all(sp.b.get(), in.data(), in.size());
  int status = 0;
  REQUIRE(::waitpid(sender, &status, 0) == sender);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  REQUIRE(got.ok());
  CHECK(got->bytes == message.size());
  CHECK(in == message);
  REQUIRE(got->fds.size() == 1);
  CHECK(same_pipe(got->fds.front().get(), w.get()));
}

TEST_CASE("receive_all stops at end of file; send_all to a peer gone fails without SIGPIPE") {
  Pair sp(SOCK_STREAM);
  REQUIRE(send_all(sp.a.get(), "abc", 3, "sending").ok());
  sp.a.reset();
  char buf[8];
  auto got = receive_all(sp.b.get(), buf, sizeof buf);
  REQUIRE(got.ok());
  CHECK(got->bytes == 3);
  got = receive_all(sp.b.get(), buf, sizeof buf);
  REQUIRE(got.ok());
  CHECK(got->bytes == 0);

  Pair gone(SOCK_STREAM);
  gone.b.reset();
  auto st = send_all(gone.a.get(), "x", 1, "telling the peer");
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code() == EPIPE);
  CHECK(st.error().message().find("telling the peer") == 0);
}
