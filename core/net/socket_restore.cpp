#include "core/net/socket_restore.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "core/sys/io.h"

namespace cryo::net {
namespace {

Result<socklen_t> to_sockaddr(const image::SockAddr& a, sockaddr_storage* ss) {
  std::memset(ss, 0, sizeof *ss);
  if (a.family() == AF_INET && a.addr().size() == 4) {
    auto* in = reinterpret_cast<sockaddr_in*>(ss);
    in->sin_family = AF_INET;
    std::memcpy(&in->sin_addr, a.addr().data(), 4);
    in->sin_port = htons(static_cast<uint16_t>(a.port()));
    return static_cast<socklen_t>(sizeof *in);
  }
  if (a.family() == AF_INET6 && a.addr().size() == 16) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(ss);
    in6->sin6_family = AF_INET6;
    std::memcpy(&in6->sin6_addr, a.addr().data(), 16);
    in6->sin6_port = htons(static_cast<uint16_t>(a.port()));
    in6->sin6_flowinfo = a.flowinfo();
    in6->sin6_scope_id = a.scope_id();
    return static_cast<socklen_t>(sizeof *in6);
  }
  return Error(EINVAL, "bad socket address in the image");
}

template <typename T>
Status set_opt(int s, int level, int name, const T& value, const char* what) {
  if (::setsockopt(s, level, name, &value, sizeof value) < 0) return errno_error(std::string("setsockopt ") + what);
  return {};
}

Status bind_to(int s, const image::SockAddr& a) {
  sockaddr_storage ss;
  CRYO_ASSIGN(socklen_t len, to_sockaddr(a, &ss));
  if (::bind(s, reinterpret_cast<sockaddr*>(&ss), len) < 0) return errno_error("bind");
  return {};
}

Status apply_options(int s, const image::Socket& sock) {
  for (const auto& o : sock.options()) {
    int name = o.name();
    // Buffer sizes were doubled by the kernel when set; FORCE sets them as read.
    if (o.level() == SOL_SOCKET && (name == SO_SNDBUF || name == SO_RCVBUF)) {
      if (o.value().size() != sizeof(int)) continue;
      int v;
      std::memcpy(&v, o.value().data(), sizeof v);
      v /= 2;
      ::setsockopt(s, SOL_SOCKET, name == SO_SNDBUF ? SO_SNDBUFFORCE : SO_RCVBUFFORCE, &v, sizeof v);
      continue;
    }
    if (::setsockopt(s, o.level(), name, o.value().data(), static_cast<socklen_t>(o.value().size())) < 0)
      return errno_error("setsockopt " + std::to_string(o.level()) + "/" + std::to_string(name));
  }
  return {};
}

Status send_all(int s, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::send(s, data.data() + done, data.size() - done, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return errno_error("send");
    done += static_cast<size_t>(n);
  }
  return {};
}

Status restore_connection(int s, const image::Socket& sock) {
  const auto& t = sock.tcp();
  CRYO_TRY(set_opt(s, IPPROTO_TCP, TCP_REPAIR, 1, "TCP_REPAIR"));
  CRYO_TRY(set_opt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, static_cast<int>(TCP_SEND_QUEUE), "TCP_REPAIR_QUEUE"));
  CRYO_TRY(set_opt(s, IPPROTO_TCP, TCP_QUEUE_SEQ, t.send_seq(), "TCP_QUEUE_SEQ"));
  CRYO_TRY(set_opt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, static_cast<int>(TCP_RECV_QUEUE), "TCP_REPAIR_QUEUE"));
  CRYO_TRY(set_opt(s, IPPROTO_TCP, TCP_QUEUE_SEQ, t.recv_seq(), "TCP_QUEUE_SEQ"));
  if (t.timestamps()) CRYO_TRY(set_opt(s, IPPROTO_TCP, TCP_TIMESTAMP, t.timestamp(), "TCP_TIMESTAMP"));
  CRYO_TRY(bind_to(s, sock.local()).wrap("binding the connection"));
  sockaddr_storage peer;
  CRYO_ASSIGN(socklen_t len, to_sockaddr(sock.peer(), &peer));
  if (::connect(s, reinterpret_cast<sockaddr*>(&peer), len) < 0) return errno_error("connect in repair mode");

  struct tcp_repair_opt opts[4];
  int n = 0;
  opts[n++] = {TCPOPT_MAXSEG, t.mss()};
  if (t.wscale()) opts[n++] = {TCPOPT_WINDOW, t.snd_wscale() | (t.rcv_wscale() << 16)};
  if (t.sack()) opts[n++] = {TCPOPT_SACK_PERMITTED, 0};
  if (t.timestamps()) opts[n++] = {TCPOPT_TIMESTAMP, 0};
  if (::setsockopt(s, IPPROTO_TCP, TCP_REPAIR_OPTIONS, opts, static_cast<socklen_t>(n * sizeof opts[0])) < 0)
    return errno_error("TCP_REPAIR_OPTIONS");
  struct tcp_repair_window w = {t.snd_wl1(), t.snd_wnd(), t.max_window(), t.rcv_wnd(), t.rcv_wup()};
  CRYO_TRY(set_opt(s, IPPROTO_TCP, TCP_REPAIR_WINDOW, w, "TCP_REPAIR_WINDOW"));

  // Received bytes go back into the receive queue; bytes the peer has not
  // acknowledged are queued as already sent; bytes never sent go out normally.
  if (!t.recv_queue().empty()) {
    CRYO_TRY(set_opt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, static_cast<int>(TCP_RECV_QUEUE), "TCP_REPAIR_QUEUE"));
    CRYO_TRY(send_all(s, t.recv_queue()).wrap("refilling the receive queue"));
  }
  if (t.unsent_bytes() > t.send_queue().size()) return Error(EINVAL, "bad unsent byte count");
  size_t sent = t.send_queue().size() - t.unsent_bytes();
  if (sent > 0) {
    CRYO_TRY(set_opt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, static_cast<int>(TCP_SEND_QUEUE), "TCP_REPAIR_QUEUE"));
    CRYO_TRY(send_all(s, t.send_queue().substr(0, sent)).wrap("refilling the send queue"));
  }
  CRYO_TRY(set_opt(s, IPPROTO_TCP, TCP_REPAIR, 0, "TCP_REPAIR off"));
  if (t.unsent_bytes() > 0) CRYO_TRY(send_all(s, t.send_queue().substr(sent)).wrap("sending unsent bytes"));
  return {};
}

}  // namespace

Result<UniqueFd> open_socket(const image::FileDesc& f) {
  const auto& sock = f.socket();
  if ((sock.family() != AF_INET && sock.family() != AF_INET6) || sock.type() != SOCK_STREAM)
    return Error(EINVAL, "socket kind not supported by this cryo");
  int s = ::socket(static_cast<int>(sock.family()), SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
  if (s < 0) return errno_error("socket");
  UniqueFd fd(s);
  switch (sock.state()) {
    case image::Socket::UNBOUND:
      break;
    case image::Socket::BOUND:
    case image::Socket::LISTENING:
      CRYO_TRY(set_opt(s, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR"));
      CRYO_TRY(bind_to(s, sock.local()).wrap("binding the socket"));
      if (sock.state() == image::Socket::LISTENING && ::listen(s, static_cast<int>(sock.backlog())) < 0)
        return errno_error("listen");
      break;
    case image::Socket::CONNECTED:
      CRYO_TRY(restore_connection(s, sock));
      break;
    default:
      return Error(EINVAL, "bad socket state");
  }
  CRYO_TRY(apply_options(s, sock));
  if (::fcntl(s, F_SETFL, f.flags() & (O_NONBLOCK | O_APPEND | O_ASYNC)) < 0) return errno_error("F_SETFL socket");
  return fd;
}

}  // namespace cryo::net
