#include "core/net/socket_restore.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/net/packet.h"
#include "core/net/sock_kinds.h"
#include "core/net/sock_opts.h"
#include "core/net/tcp_md5.h"
#include "core/net/tcp_states.h"
#include "core/net/unix_names.h"
#include "core/sys/io.h"

namespace cryo::net {
namespace {

// The address to reach `a` at; for bind() (as_bound) a relative unix name
// stays relative (bind it in its directory: in_bound_dir).
Result<socklen_t> to_sockaddr(const image::SockAddr& a, sockaddr_storage* ss, bool as_bound = false) {
  std::memset(ss, 0, sizeof *ss);
  if (a.family() == AF_UNIX) {
    auto* un = reinterpret_cast<sockaddr_un*>(ss);
    un->sun_family = AF_UNIX;
    std::string name = a.addr();
    if (!as_bound && is_relative_unix_name(name)) {
      CRYO_ASSIGN(name, unix_path(a));
    }
    if (name.size() >= sizeof un->sun_path) return Error(EINVAL, "unix socket name too long: " + name);
    std::memcpy(un->sun_path, name.data(), name.size());
    return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() +
                                  (name.empty() || name[0] == '\0' ? 0 : 1));
  }
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

// A unix name in the filesystem (not abstract, not unnamed).
bool has_file_name(const image::SockAddr& a) {
  return a.family() == AF_UNIX && !a.addr().empty() && a.addr()[0] != '\0';
}

// connect() to a, by its filesystem name in the tree's mount namespace.
Status connect_named(int s, const image::SockAddr& a, const sockaddr* addr, socklen_t len) {
  auto go = [&]() -> Status {
    if (::connect(s, addr, len) < 0) return errno_error("connect");
    return {};
  };
  return has_file_name(a) ? with_unix_names(go) : go();
}

template <typename T>
Status set_opt(int s, int level, int name, const T& value, const char* what) {
  if (::setsockopt(s, level, name, &value, sizeof value) < 0) return errno_error(std::string("setsockopt ") + what);
  return {};
}

// while_bound runs once the name is bound: for a name unlinked at dump
// time, the connections made through it must be made then.
Status bind_to(int s, const image::SockAddr& a, const std::function<Status()>& while_bound = nullptr) {
  sockaddr_storage ss;
  CRYO_ASSIGN(socklen_t len, to_sockaddr(a, &ss, true));
  auto* addr = reinterpret_cast<sockaddr*>(&ss);
  auto nothing = []() -> Status { return {}; };
  if (a.family() == AF_UNIX && a.unlinked())
    return bind_unlinked(s, a, addr, len, while_bound ? while_bound : nothing);
  auto bind_named = [&]() -> Status {
    CRYO_TRY(in_bound_dir(a, [&]() -> Status {
      if (::bind(s, addr, len) < 0) return errno_error("bind");
      return {};
    }));
    if (a.family() == AF_UNIX && a.has_file()) {
      CRYO_ASSIGN(std::string path, unix_path(a));
      if (::lchown(path.c_str(), a.file_uid(), a.file_gid()) < 0) return errno_error("chown " + path);
      if (::fchmodat(AT_FDCWD, path.c_str(), a.file_mode() & 07777, 0) < 0) return errno_error("chmod " + path);
    }
    return {};
  };
  CRYO_TRY(has_file_name(a) ? with_unix_names(bind_named) : bind_named());
  if (while_bound) CRYO_TRY(while_bound());
  return {};
}

Status apply_options(int s, const image::Socket& sock) {
  for (const auto& o : sock.options()) {
    int name = o.name();
    if (o.level() == IPPROTO_IPV6 && name == IPV6_V6ONLY) continue;  // set by new_socket, before bind
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
  return apply_extra_options(s, sock);
}

Status send_all(int s, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::send(s, data.data() + done, data.size() - done, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return errno_error("send " + std::to_string(data.size() - done) + " queued bytes");
    done += static_cast<size_t>(n);
  }
  return {};
}

Status restore_connection(int s, const image::Socket& sock) {
  const auto& t = sock.tcp();
  CRYO_ASSIGN(int state, recorded_state(t));
  CRYO_TRY(set_opt(s, IPPROTO_TCP, TCP_REPAIR, 1, "TCP_REPAIR"));
  // The sequence numbers were read after the queued bytes; refilling the
  // queues below advances them again. A SYN not yet answered takes one.
  uint32_t send_seq = t.send_seq() - static_cast<uint32_t>(t.send_queue().size()) - (state == TCP_SYN_SENT ? 1 : 0);
  uint32_t recv_seq = t.recv_seq() - static_cast<uint32_t>(t.recv_queue().size());
  CRYO_TRY(set_opt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, static_cast<int>(TCP_SEND_QUEUE), "TCP_REPAIR_QUEUE"));
  CRYO_TRY(set_opt(s, IPPROTO_TCP, TCP_QUEUE_SEQ, send_seq, "TCP_QUEUE_SEQ"));
  CRYO_TRY(set_opt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, static_cast<int>(TCP_RECV_QUEUE), "TCP_REPAIR_QUEUE"));
  CRYO_TRY(set_opt(s, IPPROTO_TCP, TCP_QUEUE_SEQ, recv_seq, "TCP_QUEUE_SEQ"));
  if (t.timestamps()) CRYO_TRY(set_opt(s, IPPROTO_TCP, TCP_TIMESTAMP, t.timestamp(), "TCP_TIMESTAMP"));
  CRYO_TRY(bind_to(s, sock.local()).wrap("binding the connection"));
  if (state == TCP_SYN_SENT) return restore_syn_sent(s, sock);
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

  // Room for the queues first (the recorded sizes come back with the other
  // options); a send that cannot complete fails instead of blocking.
  int sndbuf = static_cast<int>(std::min<size_t>(t.send_queue().size() * 2 + (1 << 16), 1 << 30));
  int rcvbuf = static_cast<int>(std::min<size_t>(t.recv_queue().size() * 2 + (1 << 16), 1 << 30));
  CRYO_TRY(set_opt(s, SOL_SOCKET, SO_SNDBUFFORCE, sndbuf, "SO_SNDBUFFORCE"));
  CRYO_TRY(set_opt(s, SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf, "SO_RCVBUFFORCE"));
  if (::fcntl(s, F_SETFL, O_NONBLOCK) < 0) return errno_error("F_SETFL");
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
  // The window refers to sequence numbers the refilled queues reach.
  struct tcp_repair_window w = {t.snd_wl1(), t.snd_wnd(), t.max_window(), t.rcv_wnd(), t.rcv_wup()};
  window_before_fin(t, &w.rcv_wup, &w.rcv_wnd);
  CRYO_TRY(set_opt(s, IPPROTO_TCP, TCP_REPAIR_WINDOW, w, "TCP_REPAIR_WINDOW"));
  // Now established in repair mode: the FINs bring it to the recorded state.
  CRYO_TRY(restore_fins(s, sock).wrap("TCP state " + tcp_state_name(state)));
  // It stays in repair mode until the tree is let go (leave_repair): a
  // restore that fails or is killed before then closes it without a word
  // (no FIN lingering on the port for the next attempt).
  return {};
}

std::string unix_name(const std::string& name) {
  if (name.empty()) return "(unnamed)";
  return name[0] == '\0' ? "@" + name.substr(1) : name;
}

// A filesystem name left behind by the dumped socket must go before bind;
// a name some live socket answers on is not ours to take (nor a hostile
// image's to delete).
Status free_unix_name_here(const image::SockAddr& a) {
  CRYO_ASSIGN(std::string path, unix_path(a));
  if (path.empty()) return {};
  struct stat st;
  if (::lstat(path.c_str(), &st) < 0) return {};
  if (!S_ISSOCK(st.st_mode)) return Error(EEXIST, path + " exists and is not a socket");
  for (int type : {SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM}) {
    UniqueFd probe(::socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_storage ss;
    CRYO_ASSIGN(socklen_t len, to_sockaddr(a, &ss));
    if (probe.valid() && (::connect(probe.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0 || errno == EAGAIN))
      return Error(EADDRINUSE, "unix socket " + path + " is in use by a live socket");
  }
  if (::unlink(path.c_str()) < 0) return errno_error("unlink " + path);
  return {};
}

Status free_unix_name(const image::SockAddr& a) {
  if (a.unlinked()) return {};  // bound for a moment beside what is there now
  return with_unix_names([&] { return free_unix_name_here(a); });
}

bool is_unix(const image::FileDesc& f) { return f.socket().family() == AF_UNIX; }
// UDP, and the kinds restored the same way: UDP-lite, ping and raw sockets.
bool is_udp(const image::FileDesc& f) { return is_inet_datagram(f.socket()); }
bool is_packet(const image::FileDesc& f) { return f.socket().family() == AF_PACKET; }
bool is_tcp(const image::FileDesc& f) {
  return (f.socket().family() == AF_INET || f.socket().family() == AF_INET6) && f.socket().type() == SOCK_STREAM;
}

Result<UniqueFd> new_socket(const image::Socket& sock) {
  int s = ::socket(static_cast<int>(sock.family()), static_cast<int>(sock.type()) | SOCK_CLOEXEC,
                   sock.family() == AF_UNIX ? 0 : static_cast<int>(sock.protocol()));
  if (s < 0) return errno_error("socket");
  UniqueFd fd(s);
  // An IPv6 socket beside an IPv4 one on the same port (redis, nginx) must be
  // IPv6-only before it binds.
  for (const auto& o : sock.options())
    if (sock.family() == AF_INET6 && sock.type() != SOCK_RAW && o.level() == IPPROTO_IPV6 && o.name() == IPV6_V6ONLY &&
        ::setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, o.value().data(), static_cast<socklen_t>(o.value().size())) < 0)
      return errno_error("setsockopt IPV6_V6ONLY");
  CRYO_TRY(apply_before_bind(s, sock));
  CRYO_TRY(restore_md5_keys(s, sock));
  return fd;
}

bool is_netlink(const image::FileDesc& f) { return f.socket().family() == AF_NETLINK; }

// The same port id, bound explicitly; every group joined again; the flags
// and destination it had.
Result<UniqueFd> open_netlink(const image::Socket& sock) {
  const auto& nl = sock.netlink();
  if (sock.type() != SOCK_RAW && sock.type() != SOCK_DGRAM) return Error(EINVAL, "bad netlink socket type");
  UniqueFd fd(::socket(AF_NETLINK, static_cast<int>(sock.type()) | SOCK_CLOEXEC, static_cast<int>(sock.protocol())));
  if (!fd.valid()) return errno_error("socket(AF_NETLINK, " + std::to_string(sock.protocol()) + ")");
  for (const auto& o : nl.options())
    if (o.level() != SOL_NETLINK ||
        ::setsockopt(fd.get(), SOL_NETLINK, static_cast<int>(o.name()), o.value().data(),
                     static_cast<socklen_t>(o.value().size())) < 0)
      return errno_error("netlink flag " + std::to_string(o.name()));
  if (nl.portid() != 0) {
    sockaddr_nl local{};
    local.nl_family = AF_NETLINK;
    local.nl_pid = nl.portid();
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&local), sizeof local) < 0)
      return errno_error("bind netlink port id " + std::to_string(nl.portid()));
  }
  if (nl.groups_size() > 64) return Error(EINVAL, "too many netlink groups");
  for (int word = 0; word < nl.groups_size(); word++)
    for (int bit = 0; bit < 32; bit++) {
      if (!(nl.groups(word) & (1u << bit))) continue;
      int group = word * 32 + bit + 1;
      if (::setsockopt(fd.get(), SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) < 0)
        return errno_error("joining netlink group " + std::to_string(group));
    }
  if (nl.dst_portid() || nl.dst_group()) {
    sockaddr_nl peer{};
    peer.nl_family = AF_NETLINK;
    peer.nl_pid = nl.dst_portid();
    peer.nl_groups = nl.dst_group();
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&peer), sizeof peer) < 0) return errno_error("connect netlink");
  }
  return fd;
}

}  // namespace

bool repaired_on_restore(const image::FileDesc& f) {
  const auto& sock = f.socket();
  return f.kind() == image::FileDesc::SOCKET && (sock.family() == AF_INET || sock.family() == AF_INET6) &&
         sock.type() == SOCK_STREAM && sock.state() == image::Socket::CONNECTED && !sock.reconnect() &&
         !sock.tcp_closed();
}

Status leave_repair(int s, const image::Socket& sock) {
  const auto& t = sock.tcp();
  CRYO_TRY(set_opt(s, IPPROTO_TCP, TCP_REPAIR, 0, "TCP_REPAIR off"));
  // Leaving repair mode clears SO_REUSEADDR: it gets its recorded value back.
  for (const auto& o : sock.options())
    if (o.level() == SOL_SOCKET && o.name() == SO_REUSEADDR &&
        ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, o.value().data(), static_cast<socklen_t>(o.value().size())) < 0)
      return errno_error("setsockopt SO_REUSEADDR");
  if (t.unsent_bytes() > 0 && !unsent_sent_by_fins(t)) {
    // The recorded send buffer size is back, and may be smaller than the
    // queue (the kernel had grown it, or shrunk it since): with the peer
    // locked out nothing drains, so the send would fail with EAGAIN. Room
    // for the whole queue while sending, the recorded size again after.
    int recorded = 0;
    socklen_t len = sizeof recorded;
    if (::getsockopt(s, SOL_SOCKET, SO_SNDBUF, &recorded, &len) < 0) return errno_error("getsockopt SO_SNDBUF");
    int room = static_cast<int>(std::min<size_t>(t.send_queue().size() * 2 + (1 << 16), 1 << 30));
    if (room > recorded / 2) CRYO_TRY(set_opt(s, SOL_SOCKET, SO_SNDBUFFORCE, room, "SO_SNDBUFFORCE"));
    size_t sent = t.send_queue().size() - t.unsent_bytes();
    CRYO_TRY(send_all(s, t.send_queue().substr(sent)).wrap("sending unsent bytes"));
    if (room > recorded / 2) CRYO_TRY(set_opt(s, SOL_SOCKET, SO_SNDBUFFORCE, recorded / 2, "SO_SNDBUFFORCE"));
  }
  return {};
}

namespace {

Result<UniqueFd> open_tcp(const image::Socket& sock) {
  CRYO_ASSIGN(UniqueFd fd, new_socket(sock));
  int s = fd.get();
  switch (sock.state()) {
    case image::Socket::UNBOUND:
      break;
    case image::Socket::BOUND:
    case image::Socket::LISTENING:
      CRYO_TRY(set_opt(s, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR"));
      // Listeners sharing a port (SO_REUSEPORT) must each say so before bind.
      for (const auto& o : sock.options())
        if (o.level() == SOL_SOCKET && o.name() == SO_REUSEPORT &&
            ::setsockopt(s, SOL_SOCKET, SO_REUSEPORT, o.value().data(), static_cast<socklen_t>(o.value().size())) < 0)
          return errno_error("setsockopt SO_REUSEPORT");
      CRYO_TRY(bind_to(s, sock.local()).wrap("binding the socket"));
      if (sock.state() == image::Socket::LISTENING && ::listen(s, static_cast<int>(sock.backlog())) < 0)
        return errno_error("listen");
      break;
    case image::Socket::CONNECTED:
      if (sock.tcp_closed()) return closed_connection(sock);
      CRYO_TRY(restore_connection(s, sock));
      break;
    default:
      return Error(EINVAL, "bad socket state");
  }
  return fd;
}

// Where a datagram sent to `sock` must go: its own address, with a wildcard
// address turned into loopback.
image::SockAddr destination_of(const image::Socket& sock) {
  image::SockAddr a = sock.local();
  bool any = true;
  for (char c : a.addr()) any = any && c == 0;
  if (a.family() != AF_UNIX && any) {
    std::string lo(a.family() == AF_INET6 ? 16 : 4, '\0');
    if (a.family() == AF_INET6) lo[15] = 1;
    else lo = std::string("\x7f\0\0\x01", 4);
    a.set_addr(lo);
  }
  return a;
}

// One queued message, with the files it carried.
Status send_message(int from, const image::Datagram& d, const FileFds& file_fds, const sockaddr* to, socklen_t to_len) {
  constexpr size_t kMaxFiles = 253;  // SCM_MAX_FD
  std::vector<int> fds;
  for (uint32_t id : d.passed_file_ids()) {
    int fd = file_fds ? file_fds(id) : -1;
    if (fd < 0) return Error(EINVAL, "a queued message carries file " + std::to_string(id) + ", which was not made");
    fds.push_back(fd);
  }
  if (fds.size() > kMaxFiles) return Error(EINVAL, "a queued message carries more files than one message can");
  std::vector<char> control(fds.empty() ? 0 : CMSG_SPACE(fds.size() * sizeof(int)));
  struct iovec iov = {const_cast<char*>(d.data().data()), d.data().size()};
  struct msghdr msg{};
  msg.msg_name = const_cast<sockaddr*>(to);
  msg.msg_namelen = to_len;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
  }
  ssize_t n = ::sendmsg(from, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  if (n != static_cast<ssize_t>(d.data().size())) return errno_error("refilling a receive queue");
  return {};
}

class SocketBuilder {
 public:
  SocketBuilder(const image::Files& files, const std::function<bool(uint32_t)>& wanted, const FileFds& file_fds,
                std::map<uint32_t, UniqueFd>* out)
      : files_(files), wanted_(wanted), file_fds_(file_fds), out_(out) {
    // A socket in flight is one of those made here: found among them first.
    carried_fds_ = [this](uint32_t id) {
      if (auto it = out_->find(id); it != out_->end()) return it->second.get();
      return file_fds_ ? file_fds_(id) : -1;
    };
  }

  Status build() {
    for (const auto& f : files_.files()) {
      if (f.kind() != image::FileDesc::SOCKET) continue;
      if (is_unix(f) && f.socket().inode()) by_inode_[f.socket().inode()] = &f;
      if (wanted_(f.id())) socks_.push_back(&f);
    }
    // Packet sockets come first, none receiving yet: the restore of a ring
    // sends frames on lo (packet_ring.h) that one bound already could see.
    for (const auto* f : socks_) {
      if (!is_packet(*f)) continue;
      CRYO_ASSIGN((*out_)[f->id()], new_packet_socket(f->socket()).wrap(what(*f)));
    }
    for (const auto* f : socks_) CRYO_TRY(create(*f).wrap(what(*f)));
    for (const auto* f : socks_) CRYO_TRY(connect(*f).wrap(what(*f)));
    for (const auto* f : socks_) CRYO_TRY(refill(*f).wrap(what(*f)));
    for (const auto* f : socks_) CRYO_TRY(finish(*f).wrap(what(*f)));
    return {};
  }

 private:
  std::string what(const image::FileDesc& f) { return "socket " + std::to_string(f.id()); }
  int fd(const image::FileDesc& f) { return out_->count(f.id()) ? (*out_)[f.id()].get() : -1; }

  const image::FileDesc* unix_listener(const std::string& name) {
    for (const auto* f : socks_)
      if (is_unix(*f) && f->socket().state() == image::Socket::LISTENING && f->socket().local().addr() == name &&
          !f->socket().local().unlinked())  // (those made their connections while bound)
        return f;
    return nullptr;
  }

  Status create(const image::FileDesc& f) {
    const auto& sock = f.socket();
    if (is_tcp(f) && sock.reconnect()) return {};  // connects to its listener below
    if (is_tcp(f)) {
      CRYO_ASSIGN((*out_)[f.id()], open_tcp(sock));
      return {};
    }
    if (is_netlink(f)) {
      CRYO_ASSIGN((*out_)[f.id()], open_netlink(sock));
      return {};
    }
    if (is_packet(f)) {  // made above; its filter goes on before it receives anything
      CRYO_TRY(apply_options(fd(f), sock));
      return start_packet_socket(fd(f), sock);
    }
    if (!is_unix(f) && !is_udp(f)) return Error(EINVAL, "a kind of socket this cryo cannot restore");
    if (is_unix(f) && sock.peer_gone()) return open_widowed(f);
    if (is_unix(f) && sock.state() == image::Socket::CONNECTED) return {};  // made in pairs below
    CRYO_ASSIGN(UniqueFd s, new_socket(sock));
    if (is_udp(f)) CRYO_TRY(apply_options(s.get(), sock));  // SO_REUSEADDR/PORT before bind
    bool bind = is_udp(f) ? sock.local().port() != 0 : !sock.local().addr().empty();
    bool listening = false;
    // A listener whose name is unlinked: its connections are made while the
    // name is bound again for a moment.
    auto while_bound = [&]() -> Status {
      if (sock.state() != image::Socket::LISTENING || !sock.local().unlinked()) return {};
      if (::listen(s.get(), static_cast<int>(sock.backlog())) < 0) return errno_error("listen");
      listening = true;
      return connect_through(f, s.get());
    };
    if (bind) {
      if (is_unix(f)) CRYO_TRY(free_unix_name(sock.local()));
      CRYO_TRY(bind_to(s.get(), sock.local(), while_bound)
                   .wrap("bind " + (is_unix(f) ? unix_name(sock.local().addr()) : "")));
    }
    if (sock.state() == image::Socket::LISTENING && !listening &&
        ::listen(s.get(), static_cast<int>(sock.backlog())) < 0)
      return errno_error("listen");
    (*out_)[f.id()] = std::move(s);
    return {};
  }

  // The connections accepted from `listener` (fd l): each client connects
  // again and the listener accepts its end.
  Status connect_through(const image::FileDesc& listener, int l) {
    const auto& name = listener.socket().local();
    for (const auto* f : socks_) {
      const auto& sock = f->socket();
      if (!is_unix(*f) || sock.state() != image::Socket::CONNECTED || sock.peer_gone() ||
          sock.type() == SOCK_DGRAM || fd(*f) >= 0 || sock.peer().addr() != name.addr())
        continue;
      auto peer_it = by_inode_.find(sock.peer_inode());
      if (peer_it == by_inode_.end()) continue;
      const image::FileDesc* server = peer_it->second;
      const auto& ss = server->socket();
      if (ss.peer_inode() != sock.inode() || ss.local().addr() != name.addr() || ss.local().unlinked() != name.unlinked() ||
          !wanted_(server->id()))
        continue;
      CRYO_ASSIGN(UniqueFd c, new_socket(sock));
      CRYO_TRY(connect_to(c.get(), name));
      int a = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
      if (a < 0) return errno_error("accept on " + unix_name(name.addr()));
      (*out_)[f->id()] = std::move(c);
      (*out_)[server->id()] = UniqueFd(a);
    }
    return {};
  }

  // A connection whose peer was closed: one end of a new pair, the other
  // end sends what was queued (with the others' queues: it may carry sockets
  // not made yet), then goes (the reader sees the bytes, then end of file,
  // as before).
  Status open_widowed(const image::FileDesc& f) {
    const auto& sock = f.socket();
    if (sock.type() != SOCK_STREAM && sock.type() != SOCK_SEQPACKET && sock.type() != SOCK_DGRAM)
      return Error(EINVAL, "bad unix socket type");
    int pair[2];
    if (::socketpair(AF_UNIX, static_cast<int>(sock.type()) | SOCK_CLOEXEC, 0, pair) < 0)
      return errno_error("socketpair");
    (*out_)[f.id()] = UniqueFd(pair[0]);
    gone_peers_[f.id()] = UniqueFd(pair[1]);
    return {};
  }

  Status connect_to(int s, const image::SockAddr& a) {
    sockaddr_storage ss;
    CRYO_ASSIGN(socklen_t len, to_sockaddr(a, &ss));
    return connect_named(s, a, reinterpret_cast<sockaddr*>(&ss), len)
        .wrap("connect to " + (a.family() == AF_UNIX ? unix_name(a.addr()) : std::string("the peer")));
  }

  // A connection its listener had not accepted: connect again from the same
  // address, and send what the listener's side had received and what was in flight.
  Status reconnect(const image::FileDesc& f) {
    const auto& sock = f.socket();
    CRYO_ASSIGN(UniqueFd s, new_socket(sock));
    CRYO_TRY(set_opt(s.get(), SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR"));
    // Bound in repair mode, which forces the port's reuse: the dumped client's
    // socket may still be on its way out of the kernel. Then a plain connect.
    CRYO_TRY(set_opt(s.get(), IPPROTO_TCP, TCP_REPAIR, 1, "TCP_REPAIR"));
    CRYO_TRY(bind_to(s.get(), sock.local()).wrap("binding the connection again"));
    CRYO_TRY(set_opt(s.get(), IPPROTO_TCP, TCP_REPAIR, 0, "TCP_REPAIR off"));
    CRYO_TRY(connect_to(s.get(), sock.peer()));
    image::Datagram pending;
    pending.set_data(sock.pending_data() + sock.tcp().send_queue());
    if (!pending.data().empty())
      CRYO_TRY(send_one(s.get(), pending, nullptr).wrap("re-sending a pending connection's bytes"));
    (*out_)[f.id()] = std::move(s);
    return {};
  }

  Status connect(const image::FileDesc& f) {
    const auto& sock = f.socket();
    if (is_tcp(f) && sock.reconnect()) return reconnect(f);
    if (is_udp(f)) return sock.state() == image::Socket::CONNECTED ? connect_to(fd(f), sock.peer()) : Status();
    if (!is_unix(f) || sock.state() != image::Socket::CONNECTED || fd(f) >= 0) return {};
    auto peer_it = by_inode_.find(sock.peer_inode());
    const image::FileDesc* peer = peer_it == by_inode_.end() ? nullptr : peer_it->second;
    bool mutual = peer && peer->socket().state() == image::Socket::CONNECTED &&
                  peer->socket().peer_inode() == sock.inode();
    if (mutual && sock.type() != SOCK_DGRAM) {
      // Through the listener both ends were made by, when it is still here.
      const image::FileDesc* client = &f;
      const image::FileDesc* server = peer;
      const image::FileDesc* listener = unix_listener(f.socket().peer().addr());
      if (!listener || server->socket().local().addr() != listener->socket().local().addr()) {
        std::swap(client, server);
        listener = unix_listener(client->socket().peer().addr());
        if (listener && server->socket().local().addr() != listener->socket().local().addr()) listener = nullptr;
      }
      if (listener) {
        CRYO_ASSIGN(UniqueFd c, new_socket(client->socket()));
        CRYO_TRY(connect_to(c.get(), listener->socket().local()));
        int a = ::accept4(fd(*listener), nullptr, nullptr, SOCK_CLOEXEC);
        if (a < 0) return errno_error("accept on " + unix_name(listener->socket().local().addr()));
        (*out_)[client->id()] = std::move(c);
        (*out_)[server->id()] = UniqueFd(a);
        return {};
      }
    }
    if (mutual && (sock.local().addr().empty() || peer->socket().local().addr().empty())) {
      int pair[2];
      if (::socketpair(AF_UNIX, static_cast<int>(sock.type()) | SOCK_CLOEXEC, 0, pair) < 0)
        return errno_error("socketpair");
      (*out_)[f.id()] = UniqueFd(pair[0]);
      (*out_)[peer->id()] = UniqueFd(pair[1]);
      return {};
    }
    // A named peer (ours and bound by now, or outside the tree with
    // --ext-unix-sk): bind our own name, connect to its name.
    CRYO_ASSIGN(UniqueFd s, new_socket(sock));
    if (!sock.local().addr().empty()) {
      CRYO_TRY(free_unix_name(sock.local()));
      CRYO_TRY(bind_to(s.get(), sock.local()));
    }
    if (mutual) {
      CRYO_ASSIGN(UniqueFd p, new_socket(peer->socket()));
      CRYO_TRY(free_unix_name(peer->socket().local()));
      CRYO_TRY(bind_to(p.get(), peer->socket().local()));
      CRYO_TRY(connect_to(s.get(), peer->socket().local()));
      CRYO_TRY(connect_to(p.get(), sock.local()));
      (*out_)[peer->id()] = std::move(p);
    } else {
      CRYO_TRY(connect_to(s.get(), peer ? peer->socket().local() : sock.peer()));
    }
    (*out_)[f.id()] = std::move(s);
    return {};
  }

  // The socket in the tree bound to `addr`, if any.
  const image::FileDesc* bound_to(const image::SockAddr& addr, bool unix) {
    for (const auto* f : socks_) {
      if (is_unix(*f) != unix || (!unix && !is_udp(*f))) continue;
      const auto& l = f->socket().local();
      if (l.addr() == addr.addr() && (unix || l.port() == addr.port())) return f;
    }
    return nullptr;
  }

  Status send_one(int from, const image::Datagram& d, const image::SockAddr* to) {
    sockaddr_storage ss;
    socklen_t len = 0;
    if (to) {
      CRYO_ASSIGN(len, to_sockaddr(*to, &ss));
    }
    return send_message(from, d, carried_fds_, to ? reinterpret_cast<sockaddr*>(&ss) : nullptr, len);
  }

  Status refill(const image::FileDesc& f) {
    const auto& sock = f.socket();
    if (is_unix(f) && sock.peer_gone()) {
      auto gone = gone_peers_.extract(f.id());
      if (gone.empty()) return {};
      for (const auto& d : sock.queue()) CRYO_TRY(send_one(gone.mapped().get(), d, nullptr));
      return {};
    }
    if (sock.queue_size() == 0 || is_tcp(f)) return {};
    auto peer_it = by_inode_.find(sock.peer_inode());
    const image::FileDesc* peer = is_unix(f) && peer_it != by_inode_.end() ? peer_it->second : nullptr;
    if (is_unix(f) && sock.type() != SOCK_DGRAM) {
      if (!peer) return Error(EINVAL, "bytes queued from a peer outside the tree cannot be restored");
      for (const auto& d : sock.queue()) CRYO_TRY(send_one(fd(*peer), d, nullptr));
      return {};
    }
    image::SockAddr dest = destination_of(sock);
    for (const auto& d : sock.queue()) {
      const image::FileDesc* sender = nullptr;
      if (d.has_source() && (is_udp(f) || !d.source().addr().empty())) sender = bound_to(d.source(), is_unix(f));
      if (sender && sender->socket().protocol() != sock.protocol()) sender = nullptr;  // a ping socket's ident
      if (!sender && peer && (!d.has_source() || d.source().addr() == peer->socket().local().addr())) sender = peer;
      if (sender) {
        bool connected_to_us = sender->socket().state() == image::Socket::CONNECTED &&
                               (is_udp(f) ? sender->socket().peer().port() == sock.local().port()
                                          : sender->socket().peer_inode() == sock.inode());
        CRYO_TRY(send_one(fd(*sender), d, connected_to_us ? nullptr : &dest));
        continue;
      }
      // From outside the tree: a socket of our own, bound to the sender's
      // address where there was one.
      CRYO_ASSIGN(UniqueFd tmp, new_socket(sock));
      if (d.has_source() && (is_udp(f) ? d.source().port() != 0 : !d.source().addr().empty())) {
        int on = 1;
        ::setsockopt(tmp.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
        ::setsockopt(tmp.get(), IPPROTO_IP, IP_FREEBIND, &on, sizeof on);
        CRYO_TRY(bind_to(tmp.get(), d.source()).wrap("re-sending a datagram from its sender's address"));
      }
      if (sock.local().addr().empty() && is_unix(f)) return Error(EINVAL, "a queued datagram for an unnamed socket");
      CRYO_TRY(send_one(tmp.get(), d, &dest));
    }
    return {};
  }

  Status finish(const image::FileDesc& f) {
    int s = fd(f);
    if (s < 0) return Error(EINVAL, "was not created");
    if (is_udp(f) || is_packet(f)) {  // options went on before bind
      CRYO_TRY(apply_shutdown(s, f.socket()));
      if (::fcntl(s, F_SETFL, f.flags() & (O_NONBLOCK | O_APPEND | O_ASYNC)) < 0) return errno_error("F_SETFL socket");
      return {};
    }
    return finish_socket(s, f);
  }

  const image::Files& files_;
  const std::function<bool(uint32_t)>& wanted_;
  const FileFds& file_fds_;
  FileFds carried_fds_;
  std::map<uint32_t, UniqueFd>* out_;
  std::map<uint32_t, UniqueFd> gone_peers_;  // the stand-ins for peers that were closed, until they refill the queues
  std::vector<const image::FileDesc*> socks_;
  std::map<uint64_t, const image::FileDesc*> by_inode_;
};

}  // namespace

Result<UniqueFd> unix_listen(const image::Socket& listener) {
  CRYO_ASSIGN(UniqueFd s, new_socket(listener));
  CRYO_TRY(free_unix_name(listener.local()));
  CRYO_TRY(bind_to(s.get(), listener.local()).wrap("bind " + unix_name(listener.local().addr())));
  if (::listen(s.get(), static_cast<int>(listener.backlog())) < 0) return errno_error("listen");
  return s;
}

Result<UniqueFd> unix_connect(const image::Socket& client, const image::Socket& listener) {
  CRYO_ASSIGN(UniqueFd s, new_socket(client));
  sockaddr_storage ss;
  CRYO_ASSIGN(socklen_t len, to_sockaddr(listener.local(), &ss));
  CRYO_TRY(connect_named(s.get(), listener.local(), reinterpret_cast<sockaddr*>(&ss), len)
               .wrap("connect to " + unix_name(listener.local().addr())));
  return s;
}

Status send_queued(int from, const image::Socket& receiver, const FileFds& file_fds) {
  for (const auto& d : receiver.queue()) CRYO_TRY(send_message(from, d, file_fds, nullptr, 0));
  return {};
}

Status finish_socket(int fd, const image::FileDesc& f) {
  const auto& sock = f.socket();
  CRYO_TRY(apply_options(fd, sock));
  if (sock.shutdown_read() || sock.shutdown_write())
    ::shutdown(fd, sock.shutdown_read() && sock.shutdown_write() ? SHUT_RDWR : sock.shutdown_read() ? SHUT_RD : SHUT_WR);
  if (::fcntl(fd, F_SETFL, f.flags() & (O_NONBLOCK | O_APPEND | O_ASYNC)) < 0) return errno_error("F_SETFL socket");
  return {};
}

Status open_sockets(const image::Files& files, const std::function<bool(uint32_t id)>& wanted,
                    const FileFds& file_fds, std::map<uint32_t, UniqueFd>* out) {
  return SocketBuilder(files, wanted, file_fds, out).build();
}

}  // namespace cryo::net
