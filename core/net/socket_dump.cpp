#include "core/net/socket_dump.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <linux/netlink.h>
#include <linux/netlink_diag.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "core/net/packet.h"
#include "core/net/sock_kinds.h"
#include "core/net/sock_opts.h"
#include "core/net/tcp_states.h"
#include "core/net/unix_names.h"
#include "core/sys/fdpass.h"
#include "core/sys/log.h"
#include "core/sys/proc.h"

#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76  // Linux 6.5; newer than this libc's headers
#endif

namespace cryo::net {
namespace {

constexpr int kIpprotoMptcp = 262;  // IPPROTO_MPTCP (Linux 5.6)

std::string who(pid_t pid, int fd) { return "pid " + std::to_string(pid) + " fd " + std::to_string(fd); }

template <typename T>
Result<T> get_opt(int s, int level, int name, const char* what) {
  T value{};
  socklen_t len = sizeof value;
  if (::getsockopt(s, level, name, &value, &len) < 0) return errno_error(std::string("getsockopt ") + what);
  return value;
}

image::SockAddr to_image(const sockaddr_storage& ss, socklen_t len = sizeof(sockaddr_storage)) {
  image::SockAddr a;
  a.set_family(ss.ss_family);
  if (ss.ss_family == AF_UNIX) {
    const auto* un = reinterpret_cast<const sockaddr_un*>(&ss);
    size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
    std::string path(un->sun_path, std::min(n, sizeof un->sun_path));
    if (!path.empty() && path[0] != '\0') path = path.c_str();  // filesystem names end at the NUL
    a.set_addr(path);
    return a;
  }
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    a.set_addr(std::string(reinterpret_cast<const char*>(&in->sin_addr), 4));
    a.set_port(ntohs(in->sin_port));
  } else if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    a.set_addr(std::string(reinterpret_cast<const char*>(&in6->sin6_addr), 16));
    a.set_port(ntohs(in6->sin6_port));
    a.set_flowinfo(in6->sin6_flowinfo);
    a.set_scope_id(in6->sin6_scope_id);
  }
  return a;
}

std::string addr_text(const image::SockAddr& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(a.family() == AF_INET6 ? AF_INET6 : AF_INET, a.addr().data(), buf, sizeof buf);
  return (a.family() == AF_INET6 ? "[" + std::string(buf) + "]" : std::string(buf)) + ":" + std::to_string(a.port());
}

// The options a restored socket must carry again.
void dump_options(int s, image::Socket* out) {
  struct Opt {
    int level, name;
  };
  static const Opt kOpts[] = {
      {SOL_SOCKET, SO_REUSEADDR}, {SOL_SOCKET, SO_REUSEPORT}, {SOL_SOCKET, SO_KEEPALIVE},
      {SOL_SOCKET, SO_SNDBUF},    {SOL_SOCKET, SO_RCVBUF},    {SOL_SOCKET, SO_RCVTIMEO_OLD},
      {SOL_SOCKET, SO_SNDTIMEO_OLD}, {SOL_SOCKET, SO_LINGER}, {SOL_SOCKET, SO_OOBINLINE},
      {SOL_SOCKET, SO_BROADCAST}, {SOL_SOCKET, SO_PRIORITY},  {SOL_SOCKET, SO_MARK},
      {IPPROTO_TCP, TCP_NODELAY}, {IPPROTO_TCP, TCP_KEEPIDLE}, {IPPROTO_TCP, TCP_KEEPINTVL},
      {IPPROTO_TCP, TCP_KEEPCNT}, {IPPROTO_TCP, TCP_CORK},     {IPPROTO_TCP, TCP_USER_TIMEOUT},
      {IPPROTO_IPV6, IPV6_V6ONLY},  // AF_INET6 only (others fail the getsockopt)
  };
  int type = 0;
  socklen_t tl = sizeof type;
  ::getsockopt(s, SOL_SOCKET, SO_TYPE, &type, &tl);
  for (const auto& o : kOpts) {
    if (o.level == IPPROTO_TCP && type != SOCK_STREAM) continue;
    char buf[64];
    socklen_t len = sizeof buf;
    if (::getsockopt(s, o.level, o.name, buf, &len) < 0) continue;
    auto* opt = out->add_options();
    opt->set_level(o.level);
    opt->set_name(o.name);
    opt->set_value(std::string(buf, len));
  }
}

Status peek_queue(int s, int queue, size_t size, std::string* out) {
  if (::setsockopt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, &queue, sizeof queue) < 0)
    return errno_error("TCP_REPAIR_QUEUE");
  out->assign(size, '\0');
  if (size == 0) return {};
  ssize_t n = ::recv(s, out->data(), size, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0) return errno_error("peek TCP queue");
  out->resize(static_cast<size_t>(n));
  return {};
}

Status read_tcp(int s, image::TcpConnection* t) {
  // The state is read here, in repair mode behind the lock, where it can no
  // longer change: between describe() and the lock a FIN may have arrived.
  CRYO_ASSIGN(struct tcp_info first, get_opt<struct tcp_info>(s, IPPROTO_TCP, TCP_INFO, "TCP_INFO"));
  TcpCounts counts;
  counts.state = first.tcpi_state;
  if (!is_connection_state(counts.state))
    return Error(EAGAIN, "the connection went to state " + tcp_state_name(counts.state) + " during the dump (dump again)");
  int queue = TCP_SEND_QUEUE;
  if (::setsockopt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, &queue, sizeof queue) < 0) return errno_error("TCP_REPAIR_QUEUE");
  CRYO_ASSIGN(counts.send_seq, get_opt<uint32_t>(s, IPPROTO_TCP, TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ"));
  int inq = 0;
  if (::ioctl(s, SIOCOUTQ, &counts.outq) < 0 || ::ioctl(s, SIOCOUTQNSD, &counts.unsent) < 0)
    return errno_error("SIOCOUTQ");
  queue = TCP_RECV_QUEUE;
  if (::setsockopt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, &queue, sizeof queue) < 0) return errno_error("TCP_REPAIR_QUEUE");
  CRYO_ASSIGN(counts.recv_seq, get_opt<uint32_t>(s, IPPROTO_TCP, TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ"));
  if (::ioctl(s, SIOCINQ, &inq) < 0) return errno_error("SIOCINQ");
  leave_out_fins(&counts);
  std::string sendq, recvq;
  CRYO_TRY(peek_queue(s, TCP_SEND_QUEUE, static_cast<size_t>(counts.outq), &sendq));
  CRYO_TRY(peek_queue(s, TCP_RECV_QUEUE, static_cast<size_t>(inq), &recvq));
  if (sendq.size() != static_cast<size_t>(counts.outq) || recvq.size() != static_cast<size_t>(inq))
    return Error(EIO, "TCP queues changed while being read");
  t->set_state(static_cast<uint32_t>(counts.state));
  t->set_fin_unsent(counts.fin_unsent);
  t->set_send_seq(counts.send_seq);
  t->set_recv_seq(counts.recv_seq);
  t->set_send_queue(std::move(sendq));
  t->set_unsent_bytes(static_cast<uint32_t>(counts.unsent));
  t->set_recv_queue(std::move(recvq));

  CRYO_ASSIGN(struct tcp_info info, get_opt<struct tcp_info>(s, IPPROTO_TCP, TCP_INFO, "TCP_INFO"));
  t->set_timestamps(info.tcpi_options & TCPI_OPT_TIMESTAMPS);
  t->set_sack(info.tcpi_options & TCPI_OPT_SACK);
  t->set_wscale(info.tcpi_options & TCPI_OPT_WSCALE);
  t->set_snd_wscale(info.tcpi_snd_wscale);
  t->set_rcv_wscale(info.tcpi_rcv_wscale);
  CRYO_ASSIGN(int mss, get_opt<int>(s, IPPROTO_TCP, TCP_MAXSEG, "TCP_MAXSEG"));
  t->set_mss(static_cast<uint32_t>(mss));
  if (t->timestamps()) {
    CRYO_ASSIGN(uint32_t ts, get_opt<uint32_t>(s, IPPROTO_TCP, TCP_TIMESTAMP, "TCP_TIMESTAMP"));
    t->set_timestamp(ts);
  }
  CRYO_ASSIGN(struct tcp_repair_window w,
              get_opt<struct tcp_repair_window>(s, IPPROTO_TCP, TCP_REPAIR_WINDOW, "TCP_REPAIR_WINDOW"));
  t->set_snd_wl1(w.snd_wl1);
  t->set_snd_wnd(w.snd_wnd);
  t->set_max_window(w.max_window);
  t->set_rcv_wnd(w.rcv_wnd);
  t->set_rcv_wup(w.rcv_wup);
  return {};
}

void set_repair(int s, int on) { ::setsockopt(s, IPPROTO_TCP, TCP_REPAIR, &on, sizeof on); }

// A reader with SO_PASSCRED (or SO_PASSPIDFD) sees who sent each message; the
// flags are saved, and messages queued for such a reader are refused.
Status dump_passcred(const std::string& what, int s, image::Socket* sock) {
  for (int name : {SO_PASSCRED, SO_PASSPIDFD}) {
    int on = 0;
    socklen_t len = sizeof on;
    if (::getsockopt(s, SOL_SOCKET, name, &on, &len) < 0) {
      if (errno == ENOPROTOOPT) continue;
      return errno_error(what + ": getsockopt SO_PASSCRED");
    }
    if (!on) continue;
    auto* opt = sock->add_options();
    opt->set_level(SOL_SOCKET);
    opt->set_name(name);
    opt->set_value(std::string(reinterpret_cast<const char*>(&on), sizeof on));
  }
  return {};
}

bool passes_credentials(const image::Socket& sock) {
  for (const auto& o : sock.options())
    if (o.level() == SOL_SOCKET && (o.name() == SO_PASSCRED || o.name() == SO_PASSPIDFD)) return true;
  return false;
}

std::string unix_name(const std::string& name) {
  if (name.empty()) return "(unnamed)";
  if (name[0] == '\0') return "@" + name.substr(1);
  return name;
}

// Reads the receive queue without taking anything from it: SO_PEEK_OFF makes
// each MSG_PEEK step past what the previous one returned. A peek gives cryo
// copies of the files in flight (the kernel dups them), which `passed`
// describes; a stream's peek stops after the bytes that carry files, so its
// bytes are kept in pieces, each ending with the files sent along.
// Errors of the peek itself name the socket (carrier.what); those of a file
// in flight come from the describer, which names the file and its carrier.
Status peek_receive_queue(const Carrier& carrier, int s, bool stream, image::Socket* sock,
                          const PassedFileDescriber& passed) {
  int saved = -1;
  socklen_t len = sizeof saved;
  ::getsockopt(s, SOL_SOCKET, SO_PEEK_OFF, &saved, &len);
  int zero = 0;
  if (::setsockopt(s, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero) < 0)
    return errno_error("SO_PEEK_OFF").wrap(carrier.what);
  std::vector<char> buf(1 << 18);
  std::string stream_bytes;
  Status status;
  for (int i = 0; i < 1000000; i++) {
    sockaddr_storage from{};
    char control[CMSG_SPACE(sizeof(int) * 64)];
    struct iovec iov = {buf.data(), buf.size()};
    struct msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(s, &msg, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno != EAGAIN) status = errno_error("peek the receive queue").wrap(carrier.what);
      break;
    }
    std::vector<UniqueFd> in_flight;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t k = 0; k < count; k++) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + k * sizeof fd, sizeof fd);
        in_flight.emplace_back(fd);
      }
    }
    if (msg.msg_flags & MSG_CTRUNC) {
      status = Error(carrier.what + ": more than 64 files in flight with one message (not supported)");
      break;
    }
    if (!in_flight.empty() && !passed) {
      status = Error(carrier.what + ": file descriptors in flight (SCM_RIGHTS) are not supported here");
      break;
    }
    std::vector<uint32_t> ids;
    for (auto& fd : in_flight) {
      auto id = passed(std::move(fd), carrier);
      if (!id.ok()) {
        status = std::move(id).error();
        break;
      }
      ids.push_back(*id);
    }
    if (!status.ok()) break;
    if (static_cast<size_t>(n) > buf.size()) {
      status = Error(carrier.what + ": a queued message larger than 256 KiB is not supported");
      break;
    }
    if (n == 0 && ids.empty()) break;
    if (stream) {
      stream_bytes.append(buf.data(), static_cast<size_t>(n));
      if (ids.empty()) continue;
      auto* d = sock->add_queue();
      d->set_data(std::exchange(stream_bytes, {}));
      for (uint32_t id : ids) d->add_passed_file_ids(id);
    } else {
      auto* d = sock->add_queue();
      d->set_data(std::string(buf.data(), static_cast<size_t>(n)));
      if (msg.msg_namelen > 0) d->mutable_source()->CopyFrom(to_image(from, msg.msg_namelen));
      for (uint32_t id : ids) d->add_passed_file_ids(id);
    }
  }
  ::setsockopt(s, SOL_SOCKET, SO_PEEK_OFF, &saved, sizeof saved);
  if (stream && !stream_bytes.empty()) sock->add_queue()->set_data(std::move(stream_bytes));
  return status;
}


}  // namespace

SocketDump::~SocketDump() {
  if (!keep_) resume();
}

void SocketDump::resume() {
  for (auto& t : tcp_)
    if (std::exchange(t.repairing, false)) {
      set_repair(t.copy.get(), 0);
      ::setsockopt(t.copy.get(), SOL_SOCKET, SO_REUSEADDR, &t.reuseaddr, sizeof t.reuseaddr);
    }
  if (!lock_table_.empty()) {
    auto st = unlock_connections(lock_table_, options_.network_lock, options_.net_ns);
    if (!st.ok()) log::error(st.error().message());
    lock_table_.clear();
  }
}

std::vector<int> SocketDump::tcp_sockets() const {
  std::vector<int> out;
  for (const auto& t : tcp_) out.push_back(t.copy.get());
  return out;
}

Status SocketDump::describe(pid_t pid, int fd, image::FileDesc* f) {
  CRYO_ASSIGN(UniqueFd s, copy_fd(pid, fd).wrap(who(pid, fd)));
  return describe_socket({who(pid, fd), pid, 0, who(pid, fd), who(pid, fd)}, std::move(s), f);
}

Status SocketDump::describe_in_flight(const Carrier& self, int fd, image::FileDesc* f) {
  UniqueFd s(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!s.valid()) return errno_error("dup").wrap(self.what);
  return describe_socket(self, std::move(s), f);
}

Status SocketDump::describe_socket(const Carrier& self, UniqueFd s, image::FileDesc* f) {
  // describe_kind keeps its copy for some kinds (TCP connections, listeners).
  UniqueFd opts(::fcntl(s.get(), F_DUPFD_CLOEXEC, 0));
  if (!opts.valid()) return errno_error("dup").wrap(self.what);
  CRYO_TRY(describe_kind(self, std::move(s), f));
  // The options of sock_opts.cpp, common to every kind.
  return dump_extra_options(opts.get(), f->mutable_socket(), &option_defaults_).wrap(self.what);
}

Status SocketDump::describe_kind(const Carrier& self, UniqueFd s, image::FileDesc* f) {
  const std::string& what = self.what;
  pid_t pid = self.pid;
  CRYO_ASSIGN(int family, get_opt<int>(s.get(), SOL_SOCKET, SO_DOMAIN, "SO_DOMAIN"));
  CRYO_ASSIGN(int type, get_opt<int>(s.get(), SOL_SOCKET, SO_TYPE, "SO_TYPE"));
  CRYO_ASSIGN(int protocol, get_opt<int>(s.get(), SOL_SOCKET, SO_PROTOCOL, "SO_PROTOCOL"));
  auto* sock = f->mutable_socket();
  sock->set_family(static_cast<uint32_t>(family));
  sock->set_type(static_cast<uint32_t>(type));
  sock->set_protocol(static_cast<uint32_t>(protocol));
  f->set_kind(image::FileDesc::SOCKET);
  if (family == AF_UNIX) {
    CRYO_TRY(describe_unix(self, s.get(), f->socket().inode(), sock));
    return {};
  }
  if (family == AF_PACKET) return describe_packet(what, s.get(), sock);
  if (is_inet_datagram(family, type, protocol)) {  // UDP, UDP-lite, ping, raw
    CRYO_TRY(describe_udp(self, s.get(), sock));
    return {};
  }
  if (family == AF_NETLINK) return describe_netlink(what, s.get(), f->socket().inode(), sock);
  if ((family == AF_INET || family == AF_INET6) && protocol == kIpprotoMptcp)
    return Error(what + ": MPTCP (multipath TCP) sockets are not supported");
  if ((family != AF_INET && family != AF_INET6) || type != SOCK_STREAM || protocol != IPPROTO_TCP) {
    return Error(what + ": sockets of family " + std::to_string(family) + ", type " + std::to_string(type) +
                 " and protocol " + std::to_string(protocol) + " are not supported yet");
  }
  sockaddr_storage local{};
  socklen_t len = sizeof local;
  if (::getsockname(s.get(), reinterpret_cast<sockaddr*>(&local), &len) < 0) return errno_error(what + ": getsockname");
  sock->mutable_local()->CopyFrom(to_image(local));
  // An upper layer protocol (kernel TLS, espintcp) keeps state of its own
  // in the socket: the connection would come back without it (kernel TLS:
  // sending in clear).
  char ulp[32] = {};
  socklen_t ulp_len = sizeof ulp - 1;
  if (::getsockopt(s.get(), IPPROTO_TCP, TCP_ULP, ulp, &ulp_len) == 0 && ulp[0])
    return Error(what + ": TCP socket with the upper layer protocol '" + std::string(ulp) + "'" +
                 (std::string(ulp) == "tls" ? " (kernel TLS)" : "") + " is not supported");
  CRYO_TRY(md5_keys_.describe(family, f->socket().inode(), sock).wrap(what));
  dump_options(s.get(), sock);
  CRYO_ASSIGN(struct tcp_info info, get_opt<struct tcp_info>(s.get(), IPPROTO_TCP, TCP_INFO, "TCP_INFO"));
  switch (info.tcpi_state) {
    case TCP_CLOSE: {
      // Never connected, or connected once and closed (both FINs, a reset):
      // then the kernel shut both ways, and a read sees the end of the stream
      // where a fresh socket's would fail with ENOTCONN. poll shows that
      // (POLLRDHUP), and an error the process has not read yet (POLLERR),
      // which cannot be read without taking it from the process.
      pollfd p{s.get(), POLLIN | POLLRDHUP, 0};
      if (::poll(&p, 1, 0) < 0) return errno_error(what + ": poll");
      if (p.revents & POLLERR)
        return Error(what + ": TCP socket closed with an error the process has not read yet (a reset connection: "
                     "not supported, the error could not be given back; dump again once it has read it)");
      sock->set_shutdown_read(p.revents & POLLRDHUP);
      sock->set_state(sock->local().port() ? image::Socket::BOUND : image::Socket::UNBOUND);
      return {};
    }
    case TCP_LISTEN:
      // For a listener TCP_INFO reports the accept queue and the backlog.
      if (info.tcpi_unacked > 0 && !options_.tcp_close) {
        std::string pending = what + ": listening socket " + addr_text(sock->local()) + " has " +
                              std::to_string(info.tcpi_unacked) + " connections not yet accepted";
        if (options_.skip_in_flight && (!options_.tcp_established || options_.leave_running)) {
          log::warn(pending + ": left out of the image (--skip-in-flight)");
        } else {
          if (!options_.tcp_established) return Error(pending + " (dump with --tcp-established)");
          if (options_.leave_running) return Error(pending + " (not supported with --leave-running)");
          listeners_.push_back({what, std::move(s), sock->local(), info.tcpi_unacked});
        }
      }
      sock->set_state(image::Socket::LISTENING);
      sock->set_backlog(info.tcpi_sacked);
      return {};
    default:
      if (!is_connection_state(info.tcpi_state))
        return Error(what + ": TCP socket in state " + tcp_state_name(info.tcpi_state) + " (not supported)");
      return describe_connection(what, pid, info.tcpi_state, std::move(s), f);
  }
}

// A connection: established, being set up (SYN_SENT) or half closed.
Status SocketDump::describe_connection(const std::string& what, pid_t pid, int state, UniqueFd s,
                                       image::FileDesc* f) {
  auto* sock = f->mutable_socket();
  sockaddr_storage peer{};
  socklen_t len = sizeof peer;
  if (state == TCP_SYN_SENT) {
    CRYO_ASSIGN(image::SockAddr to, connecting_peer(pid, s.get()));
    sock->mutable_peer()->CopyFrom(to);
  } else {
    if (::getpeername(s.get(), reinterpret_cast<sockaddr*>(&peer), &len) < 0) return errno_error(what + ": getpeername");
    sock->mutable_peer()->CopyFrom(to_image(peer));
  }
  sock->set_state(image::Socket::CONNECTED);
  std::string conn = addr_text(sock->local()) + " -> " + addr_text(sock->peer());
  if (options_.tcp_close) {
    sock->set_tcp_closed(true);  // no state saved, nothing locked: it comes back closed
    return {};
  }
  if (!options_.tcp_established)
    return Error(what + ": " + (state == TCP_ESTABLISHED ? std::string("established") : tcp_state_name(state)) +
                 " TCP connection " + conn + " (dump with --tcp-established, or --tcp-close)");
  Tcp t;
  t.who = what;
  socklen_t optlen = sizeof t.reuseaddr;
  ::getsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &t.reuseaddr, &optlen);
  t.copy = std::move(s);
  t.file_id = f->id();
  t.conn.local = sock->local();
  t.conn.peer = sock->peer();
  tcp_.push_back(std::move(t));
  return {};
}

Status SocketDump::describe_netlink(const std::string& what, int s, uint64_t inode, image::Socket* sock) {
  if (!netlink_table_) {
    CRYO_ASSIGN(auto table, netlink_sockets());
    netlink_table_ = std::move(table);
  }
  sockaddr_nl local{}, peer{};
  socklen_t len = sizeof local;
  if (::getsockname(s, reinterpret_cast<sockaddr*>(&local), &len) < 0) return errno_error(what + ": getsockname");
  // sock_diag lists bound sockets only; an unbound one has sent nothing yet.
  auto it = netlink_table_->find(inode);
  if (it == netlink_table_->end() && local.nl_pid != 0)
    return Error(what + ": netlink socket " + std::to_string(inode) + " is not in sock_diag");
  // A reply half read, or messages waiting, cannot be saved without taking them.
  if (it != netlink_table_->end() && (it->second.flags & NDIAG_FLAG_CB_RUNNING))
    return Error(what + ": a netlink dump is in progress on this socket (not supported: dump again)");
  char peek;
  ssize_t queued = ::recv(s, &peek, 1, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC);
  if ((it != netlink_table_->end() && it->second.rmem > 0) || queued > 0)
    return Error(what + ": netlink socket has messages not yet read (not supported: dump again)");
  auto* nl = sock->mutable_netlink();
  nl->set_portid(local.nl_pid);
  len = sizeof peer;
  if (::getpeername(s, reinterpret_cast<sockaddr*>(&peer), &len) == 0) {
    nl->set_dst_portid(peer.nl_pid);
    nl->set_dst_group(peer.nl_groups);
  }
  std::vector<uint32_t> groups(64);
  len = static_cast<socklen_t>(groups.size() * 4);
  if (::getsockopt(s, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, groups.data(), &len) < 0)
    return errno_error(what + ": NETLINK_LIST_MEMBERSHIPS");
  groups.resize(std::min<size_t>(groups.size(), len / 4));
  while (!groups.empty() && groups.back() == 0) groups.pop_back();
  for (uint32_t word : groups) nl->add_groups(word);
  for (int flag : {NETLINK_PKTINFO, NETLINK_BROADCAST_ERROR, NETLINK_NO_ENOBUFS, NETLINK_LISTEN_ALL_NSID,
                   NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK}) {
    int value = 0;
    len = sizeof value;
    if (::getsockopt(s, SOL_NETLINK, flag, &value, &len) < 0 || value == 0) continue;
    auto* o = nl->add_options();
    o->set_level(SOL_NETLINK);
    o->set_name(static_cast<uint32_t>(flag));
    o->set_value(std::string(reinterpret_cast<const char*>(&value), sizeof value));
  }
  sock->set_state(local.nl_pid ? image::Socket::BOUND : image::Socket::UNBOUND);
  dump_options(s, sock);
  return {};
}

Status SocketDump::describe_udp(const Carrier& self, int s, image::Socket* sock) {
  const std::string& what = self.what;
  sockaddr_storage local{}, peer{};
  socklen_t len = sizeof local;
  if (::getsockname(s, reinterpret_cast<sockaddr*>(&local), &len) < 0) return errno_error(what + ": getsockname");
  sock->mutable_local()->CopyFrom(to_image(local));
  len = sizeof peer;
  if (::getpeername(s, reinterpret_cast<sockaddr*>(&peer), &len) == 0) {
    sock->mutable_peer()->CopyFrom(to_image(peer));
    sock->set_state(image::Socket::CONNECTED);
  } else {
    sock->set_state(sock->local().port() ? image::Socket::BOUND : image::Socket::UNBOUND);
  }
  dump_options(s, sock);
  CRYO_TRY(datagram_state_.describe(what, s, sock->inode(), sock));
  if (!keeps_queue(*sock)) return {};
  return peek_receive_queue(self, s, false, sock, describe_passed_);
}

bool SocketDump::is_pending_client(uint64_t inode) const {
  for (const auto& [_, info] : *unix_table_)
    if (info.state == TCP_LISTEN && std::find(info.pending.begin(), info.pending.end(), inode) != info.pending.end())
      return true;
  return false;
}

Status SocketDump::describe_unix(const Carrier& self, int s, uint64_t inode, image::Socket* sock) {
  const std::string& what = self.what;
  pid_t pid = self.pid;
  if (!unix_table_) {
    CRYO_ASSIGN(auto table, unix_sockets());
    unix_table_ = std::move(table);
  }
  auto it = unix_table_->find(inode);
  if (it == unix_table_->end()) return Error(what + ": unix socket " + std::to_string(inode) + " is not in sock_diag");
  const UnixInfo& info = it->second;
  sock->set_inode(inode);
  image::SockAddr local;
  local.set_family(AF_UNIX);
  local.set_addr(info.name);
  if (is_relative_unix_name(info.name)) {
    if (!options_.tree_root.empty())
      return Error(what + ": unix socket bound to the relative path " + info.name +
                   " in a mount namespace of the tree's own (not supported yet)");
    auto dir = find_bound_dir(pid, info.name, info.vfs_dev, info.vfs_ino);
    if (!dir.ok())
      return Error(what + ": unix socket bound to the relative path " + info.name + ": " + dir.error().message() +
                   " (not supported)");
    local.set_dir(*dir);
  }
  if (!info.name.empty() && info.name[0] != '\0') {
    CRYO_ASSIGN(std::string path, unix_path(local));
    struct stat file;
    if (::lstat((options_.tree_root + path).c_str(), &file) == 0 && S_ISSOCK(file.st_mode) && file.st_ino == info.vfs_ino) {
      local.set_has_file(true);
      local.set_file_mode(file.st_mode & 07777);
      local.set_file_uid(file.st_uid);
      local.set_file_gid(file.st_gid);
    } else if (!options_.tree_root.empty()) {
      return Error(what + ": unix socket " + info.name + " whose file was unlinked or replaced, in a mount namespace "
                   "of the tree's own (not supported yet)");
    } else {
      local.set_unlinked(true);  // its file was unlinked or replaced since the bind
    }
  }
  sock->mutable_local()->CopyFrom(local);
  sockaddr_storage peer{};
  socklen_t len = sizeof peer;
  if (::getpeername(s, reinterpret_cast<sockaddr*>(&peer), &len) == 0) sock->mutable_peer()->CopyFrom(to_image(peer, len));
  sock->set_peer_inode(info.peer);
  if (info.state == TCP_LISTEN) {
    std::string listener = what + ": listening unix socket " + unix_name(info.name);
    if (!info.pending.empty() && local.unlinked())
      return Error(listener + ", whose name was unlinked, has connections not yet accepted (not supported: they "
                   "could not connect to it again)");
    // sock_diag names the client of each connection in the queue (the
    // socket in the queue has no inode yet); bytes a client sent are charged
    // to it until they are read.
    for (uint64_t client : info.pending) {
      auto c = unix_table_->find(client);
      if (client == 0 || c == unix_table_->end())
        return Error(listener + " has a connection not yet accepted whose client has closed it (not supported)");
      if (c->second.wqueue > 0)
        return Error(listener + " has a connection not yet accepted holding " + std::to_string(c->second.wqueue) +
                     " bytes its client sent (not supported: they can be read only by accepting it)");
      embryos_.push_back({listener, client});
    }
    sock->set_state(image::Socket::LISTENING);
    sock->set_backlog(info.wqueue);
  } else if (info.peer) {
    sock->set_state(image::Socket::CONNECTED);
  } else if (is_pending_client(inode)) {
    // Connected to a listener that has not accepted it: it connects to the
    // listener's name again (its peer name), to be accepted then.
    sock->set_state(image::Socket::CONNECTED);
    pending_clients_.insert(inode);
  } else if (info.state == TCP_ESTABLISHED && info.type != SOCK_DGRAM) {
    // Connected once; the peer closed (sock_diag names no peer inode). A
    // datagram socket others connected to is ESTABLISHED too: not this.
    sock->set_state(image::Socket::CONNECTED);
    sock->set_peer_gone(true);
  } else if (info.type == SOCK_DGRAM && info.name.empty() && sock->has_peer()) {
    // An unnamed datagram socket with a peer that sock_diag cannot name: the
    // other end of a socketpair, closed. The datagrams it sent wait here, and
    // a send gets ECONNREFUSED; it comes back as a pair whose end is closed.
    sock->set_state(image::Socket::CONNECTED);
    sock->set_peer_gone(true);
  } else {
    sock->set_state(info.name.empty() ? image::Socket::UNBOUND : image::Socket::BOUND);
  }
  sock->set_shutdown_read(info.shutdown & 1);
  sock->set_shutdown_write(info.shutdown & 2);
  struct ucred cred{};
  len = sizeof cred;
  if (::getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    sock->set_cred_pid(cred.pid);
    sock->set_cred_uid(cred.uid);
    sock->set_cred_gid(cred.gid);
  }
  dump_options(s, sock);
  CRYO_TRY(dump_passcred(what, s, sock));
  // Only a connected stream or seqpacket socket has a receive queue.
  if (info.type == SOCK_DGRAM || sock->state() == image::Socket::CONNECTED)
    CRYO_TRY(peek_receive_queue(self, s, info.type == SOCK_STREAM, sock, describe_passed_));
  if (info.peer)
    unix_.push_back({what, inode, info.peer, sock->peer().addr()});
  if (sock->queue_size() > 0 && passes_credentials(*sock))
    return Error(what + ": unix socket " + unix_name(info.name) +
                 " has messages queued with their senders' credentials for a reader with SO_PASSCRED or "
                 "SO_PASSPIDFD (not supported: the sender pids cannot be given back; dump again once they are read)");
  return {};
}

// Whether any process but cryo has socket `inode` open (a scan of /proc,
// made only to explain a refusal).
static bool held_by_a_process(uint64_t inode) {
  std::string want = "socket:[" + std::to_string(inode) + "]";
  auto held = proc::any_other_process_fd([&want](int fd_dir, const char* name) {
    char link[64];
    ssize_t n = ::readlinkat(fd_dir, name, link, sizeof link);
    return n > 0 && want == std::string_view(link, static_cast<size_t>(n));
  });
  return !held.ok() || *held;  // cannot tell: say nothing more
}

bool same_addr(const image::SockAddr& a, const image::SockAddr& b) {
  return a.family() == b.family() && a.addr() == b.addr() && a.port() == b.port();
}

// Connections waiting in a listener's queue: taken out with accept() so that
// what the listener's side received can be read; their client side must be
// in the tree, where it is restored by connecting again.
Status SocketDump::take_pending(image::Files* files) {
  for (auto& l : listeners_) {
    for (uint32_t i = 0; i < l.pending; i++) {
      sockaddr_storage from{};
      socklen_t len = sizeof from;
      int a = ::accept4(l.copy.get(), reinterpret_cast<sockaddr*>(&from), &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (a < 0) return errno_error(l.who + ": accept a pending connection");
      accepted_.emplace_back(a);
      image::SockAddr client = to_image(from);
      auto it = std::find_if(tcp_.begin(), tcp_.end(), [&](const Tcp& t) {
        return same_addr(t.conn.local, client) && same_addr(t.conn.peer, l.local);
      });
      int on = 1;
      if (it == tcp_.end()) {
        std::string outside = l.who + ": a connection from " + addr_text(client) + " waits in the queue of " +
                              addr_text(l.local) + " and its client is outside the tree";
        if (!options_.skip_in_flight) return Error(outside + " (dump with --skip-in-flight to leave it out)");
        // The tree is killed after the dump: closing it in repair mode says nothing to the client.
        ::setsockopt(a, IPPROTO_TCP, TCP_REPAIR, &on, sizeof on);
        log::warn(outside + ": left out of the image (--skip-in-flight)");
        continue;
      }
      ::setsockopt(a, IPPROTO_TCP, TCP_REPAIR, &on, sizeof on);  // closing it later must send nothing
      std::string data;
      int inq = 0;
      if (::ioctl(a, SIOCINQ, &inq) < 0) return errno_error("SIOCINQ");
      CRYO_TRY(peek_queue(a, TCP_RECV_QUEUE, static_cast<size_t>(inq), &data));
      auto* sock = files->mutable_files(static_cast<int>(it->file_id - 1))->mutable_socket();
      sock->set_reconnect(true);
      sock->set_pending_data(std::move(data));
    }
  }
  return {};
}

Status SocketDump::check_connections(image::Files* files) {
  // The clients of connections not yet accepted connect again on restore
  // (to the listener's name, which their peer name is).
  for (const auto& e : embryos_)
    if (!pending_clients_.count(e.client))
      return Error(e.listener + " has a connection not yet accepted whose client is outside the tree (not supported)");
  for (const auto& u : unix_) {
    bool inside = false;
    for (const auto& other : unix_) inside = inside || other.inode == u.peer;
    for (const auto& f : files->files())
      inside = inside || (f.kind() == image::FileDesc::SOCKET && f.socket().inode() == u.peer);
    // A peer no process holds is in flight in a queue the dump did not
    // reach: one outside the tree, or its own or that of another socket in
    // flight (a cycle only the queues hold, which the kernel frees at its next
    // garbage collection of unix sockets).
    if (!inside && u.peer_name.empty() && !held_by_a_process(u.peer))
      return Error(u.who + ": unix socket connected to socket " + std::to_string(u.peer) +
                   ", which no process holds: it is in flight (SCM_RIGHTS) in a queue outside the tree, or in a "
                   "cycle of sockets in flight that only their own queues hold (not supported)");
    if (!inside && !options_.ext_unix_sk)
      return Error(u.who + ": unix socket connected to " + unix_name(u.peer_name) + " (socket " +
                   std::to_string(u.peer) + ") outside the tree (dump with --ext-unix-sk)");
    if (!inside && u.peer_name.empty())
      return Error(u.who + ": unix socket connected to an unnamed socket outside the tree cannot be reconnected");
    if (!inside && is_relative_unix_name(u.peer_name))
      return Error(u.who + ": unix socket connected to " + u.peer_name +
                   " outside the tree, a relative name that cannot be reconnected (not supported)");
  }
  return take_pending(files);
}

Status SocketDump::lock_and_read(image::Files* files, const std::string& table) {
  if (tcp_.empty()) return {};
  // Clients that will connect again stay out of the lock: both ends are ours.
  std::vector<Connection> conns;
  for (const auto& t : tcp_)
    if (!files->files(static_cast<int>(t.file_id - 1)).socket().reconnect()) conns.push_back(t.conn);
  CRYO_ASSIGN(lock_table_, lock_connections(conns, options_.network_lock, table, options_.net_ns));
  files->mutable_network_lock()->set_method(lock_table_.empty() ? "" : options_.network_lock);
  files->mutable_network_lock()->set_table(lock_table_);
  for (auto& t : tcp_) {
    int on = 1;
    if (::setsockopt(t.copy.get(), IPPROTO_TCP, TCP_REPAIR, &on, sizeof on) < 0)
      return errno_error("TCP_REPAIR (needs CAP_NET_ADMIN)");
    t.repairing = true;
    auto* f = files->mutable_files(static_cast<int>(t.file_id - 1));
    CRYO_TRY(read_tcp(t.copy.get(), f->mutable_socket()->mutable_tcp())
                 .wrap(t.who + ": TCP connection " + addr_text(t.conn.local) + " -> " + addr_text(t.conn.peer)));
  }
  return {};
}

}  // namespace cryo::net
