#include "core/net/sock_opts.h"

#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "core/sys/fd.h"

namespace cryo::net {
namespace {

// Levels and names the libc headers of older systems may lack.
constexpr int kSolUdp = 17, kSolUdplite = 136, kSolRaw = 255, kSolIcmpv6 = 58;
constexpr int kUdpCork = 1, kUdpNoCheck6Tx = 101, kUdpNoCheck6Rx = 102, kUdpSegment = 103, kUdpGro = 104;
constexpr int kUdpliteSendCscov = 10, kUdpliteRecvCscov = 11;
constexpr int kIcmpFilter = 1, kIcmpv6Filter = 1;
constexpr int kSoBufLock = 72, kSoRcvMark = 75, kSoPreferBusyPoll = 69, kSoBusyPollBudget = 70;
constexpr int kIpLocalPortRange = 51, kIpv6Freebind = 78, kIpv6Hdrincl = 36;

struct Known {
  int level, name;
  bool before_bind;
};

// What a program commonly sets, and what a new socket of the same kind
// tells apart. Left out: what the kernel changes by itself (SO_INCOMING_CPU,
// TCP_WINDOW_CLAMP), what Socket.options already holds, and SO_PEEK_OFF
// (the dump itself moves it; socket_dump.cpp puts it back).
constexpr Known kKnown[] = {
    {SOL_SOCKET, SO_BINDTODEVICE, true},
    {IPPROTO_IP, IP_FREEBIND, true},
    {IPPROTO_IP, IP_TRANSPARENT, true},
    {IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, true},
    {IPPROTO_IP, kIpLocalPortRange, true},
    {IPPROTO_IPV6, kIpv6Freebind, true},
    {IPPROTO_IPV6, IPV6_TRANSPARENT, true},

    {SOL_SOCKET, SO_DONTROUTE, false},
    {SOL_SOCKET, SO_PASSCRED, false},
    {SOL_SOCKET, SO_PASSSEC, false},
    {SOL_SOCKET, SO_RCVLOWAT, false},
    {SOL_SOCKET, SO_TIMESTAMP_OLD, false},
    {SOL_SOCKET, SO_TIMESTAMPNS_OLD, false},
    {SOL_SOCKET, SO_TIMESTAMPING_OLD, false},
    {SOL_SOCKET, SO_RXQ_OVFL, false},
    {SOL_SOCKET, SO_WIFI_STATUS, false},
    {SOL_SOCKET, SO_NOFCS, false},
    {SOL_SOCKET, SO_SELECT_ERR_QUEUE, false},
    {SOL_SOCKET, SO_BUSY_POLL, false},
    {SOL_SOCKET, kSoPreferBusyPoll, false},
    {SOL_SOCKET, kSoBusyPollBudget, false},
    {SOL_SOCKET, SO_MAX_PACING_RATE, false},
    {SOL_SOCKET, SO_ZEROCOPY, false},
    {SOL_SOCKET, SO_TXTIME, false},
    {SOL_SOCKET, kSoRcvMark, false},

    {IPPROTO_IP, IP_TOS, false},
    {IPPROTO_IP, IP_TTL, false},
    {IPPROTO_IP, IP_HDRINCL, false},
    {IPPROTO_IP, IP_OPTIONS, false},
    {IPPROTO_IP, IP_RECVOPTS, false},
    {IPPROTO_IP, IP_RETOPTS, false},
    {IPPROTO_IP, IP_PKTINFO, false},
    {IPPROTO_IP, IP_MTU_DISCOVER, false},
    {IPPROTO_IP, IP_RECVERR, false},
    {IPPROTO_IP, IP_RECVTTL, false},
    {IPPROTO_IP, IP_RECVTOS, false},
    {IPPROTO_IP, IP_PASSSEC, false},
    {IPPROTO_IP, IP_RECVORIGDSTADDR, false},
    {IPPROTO_IP, IP_MINTTL, false},
    {IPPROTO_IP, IP_NODEFRAG, false},
    {IPPROTO_IP, IP_CHECKSUM, false},
    {IPPROTO_IP, IP_RECVFRAGSIZE, false},
    {IPPROTO_IP, IP_RECVERR_RFC4884, false},
    {IPPROTO_IP, IP_MULTICAST_IF, false},
    {IPPROTO_IP, IP_MULTICAST_TTL, false},
    {IPPROTO_IP, IP_MULTICAST_LOOP, false},
    {IPPROTO_IP, IP_MULTICAST_ALL, false},

    {IPPROTO_IPV6, kIpv6Hdrincl, false},
    {IPPROTO_IPV6, IPV6_UNICAST_HOPS, false},
    {IPPROTO_IPV6, IPV6_MULTICAST_IF, false},
    {IPPROTO_IPV6, IPV6_MULTICAST_HOPS, false},
    {IPPROTO_IPV6, IPV6_MULTICAST_LOOP, false},
    {IPPROTO_IPV6, IPV6_MULTICAST_ALL, false},
    {IPPROTO_IPV6, IPV6_MTU_DISCOVER, false},
    {IPPROTO_IPV6, IPV6_RECVERR, false},
    {IPPROTO_IPV6, IPV6_RECVPKTINFO, false},
    {IPPROTO_IPV6, IPV6_RECVHOPLIMIT, false},
    {IPPROTO_IPV6, IPV6_RECVPATHMTU, false},
    {IPPROTO_IPV6, IPV6_DONTFRAG, false},
    {IPPROTO_IPV6, IPV6_RECVTCLASS, false},
    {IPPROTO_IPV6, IPV6_TCLASS, false},
    {IPPROTO_IPV6, IPV6_AUTOFLOWLABEL, false},
    {IPPROTO_IPV6, IPV6_ADDR_PREFERENCES, false},
    {IPPROTO_IPV6, IPV6_MINHOPCOUNT, false},
    {IPPROTO_IPV6, IPV6_RECVORIGDSTADDR, false},
    {IPPROTO_IPV6, IPV6_CHECKSUM, false},
    {kSolIcmpv6, kIcmpv6Filter, false},
    {kSolRaw, kIcmpFilter, false},

    {IPPROTO_TCP, TCP_CONGESTION, false},
    {IPPROTO_TCP, TCP_NOTSENT_LOWAT, false},
    {IPPROTO_TCP, TCP_LINGER2, false},
    {IPPROTO_TCP, TCP_SYNCNT, false},
    {IPPROTO_TCP, TCP_DEFER_ACCEPT, false},
    {IPPROTO_TCP, TCP_FASTOPEN, false},
    {IPPROTO_TCP, TCP_THIN_LINEAR_TIMEOUTS, false},

    {kSolUdp, kUdpCork, false},
    {kSolUdp, kUdpSegment, false},
    {kSolUdp, kUdpGro, false},
    {kSolUdp, kUdpNoCheck6Tx, false},
    {kSolUdp, kUdpNoCheck6Rx, false},
    {kSolUdplite, kUdpliteSendCscov, false},
    {kSolUdplite, kUdpliteRecvCscov, false},
};

bool is_multicast(const Known& k) {
  if (k.level == IPPROTO_IP)
    return k.name == IP_MULTICAST_IF || k.name == IP_MULTICAST_TTL || k.name == IP_MULTICAST_LOOP ||
           k.name == IP_MULTICAST_ALL;
  return k.level == IPPROTO_IPV6 && (k.name == IPV6_MULTICAST_IF || k.name == IPV6_MULTICAST_HOPS ||
                                     k.name == IPV6_MULTICAST_LOOP || k.name == IPV6_MULTICAST_ALL);
}

bool applies(const Known& k, int family, int type, int protocol) {
  bool inet = family == AF_INET || family == AF_INET6;
  // TCP has no multicast (the options cannot be set), yet an accepted
  // connection reads other values there than a new socket.
  if (type == SOCK_STREAM && is_multicast(k)) return false;
  switch (k.level) {
    case SOL_SOCKET:
      return true;
    case IPPROTO_IP:
      return inet;
    case IPPROTO_IPV6:
    case kSolIcmpv6:
      return family == AF_INET6;
    case kSolRaw:
      return inet && type == SOCK_RAW;
    case IPPROTO_TCP:
      return inet && type == SOCK_STREAM && protocol == IPPROTO_TCP;
    case kSolUdp:
      return inet && type == SOCK_DGRAM && (protocol == IPPROTO_UDP || protocol == IPPROTO_UDPLITE);
    case kSolUdplite:
      return inet && type == SOCK_DGRAM && protocol == IPPROTO_UDPLITE;
  }
  return false;
}

// An option's value, or nullopt when the socket does not have it.
std::optional<std::string> read_option(int s, int level, int name) {
  char buf[128];
  socklen_t len = sizeof buf;
  if (::getsockopt(s, level, name, buf, &len) < 0) return std::nullopt;
  return std::string(buf, len);
}

// A socket of the same kind as s, fresh from the kernel: its options are the
// defaults. Packet sockets are made with protocol 0, which receives nothing.
UniqueFd fresh_like(int family, int type, int protocol) {
  if (family == AF_PACKET || family == AF_UNIX) protocol = 0;
  return UniqueFd(::socket(family, type | SOCK_CLOEXEC, protocol));
}

Status dump_filter(int s, image::SockExtra* extra) {
  socklen_t count = 0;
  if (::getsockopt(s, SOL_SOCKET, SO_GET_FILTER, nullptr, &count) < 0) {
    if (errno == EACCES)
      return Error("an eBPF socket filter (SO_ATTACH_BPF) is attached: only classic BPF filters are supported");
    return errno_error("SO_GET_FILTER");
  }
  if (count == 0) return {};
  if (count > BPF_MAXINSNS) return Error("socket filter of " + std::to_string(count) + " instructions");
  std::vector<sock_filter> insns(count);
  socklen_t len = count;
  if (::getsockopt(s, SOL_SOCKET, SO_GET_FILTER, insns.data(), &len) < 0) return errno_error("SO_GET_FILTER");
  insns.resize(len);
  extra->set_filter(std::string(reinterpret_cast<const char*>(insns.data()), insns.size() * sizeof(sock_filter)));
  int locked = 0;
  socklen_t ll = sizeof locked;
  if (::getsockopt(s, SOL_SOCKET, SO_LOCK_FILTER, &locked, &ll) == 0) extra->set_filter_locked(locked != 0);
  return {};
}

Status set_option(int s, const image::SockOpt& o) {
  if (o.value().size() > 128) return Error(EINVAL, "socket option value too long in the image");
  if (::setsockopt(s, o.level(), o.name(), o.value().data(), static_cast<socklen_t>(o.value().size())) < 0)
    return errno_error("setsockopt " + std::to_string(o.level()) + "/" + std::to_string(o.name()));
  return {};
}

}  // namespace

Status dump_extra_options(int s, image::Socket* sock, OptionDefaults* defaults) {
  int family = static_cast<int>(sock->family()), type = static_cast<int>(sock->type());
  int protocol = static_cast<int>(sock->protocol());
  constexpr size_t kCount = sizeof kKnown / sizeof kKnown[0];
  auto [it, is_new] = defaults->try_emplace({family, type, protocol});
  if (is_new) {
    UniqueFd fresh = fresh_like(family, type, protocol);
    it->second.resize(kCount);
    if (fresh.valid())
      for (size_t i = 0; i < kCount; i++)
        if (applies(kKnown[i], family, type, protocol))
          it->second[i] = read_option(fresh.get(), kKnown[i].level, kKnown[i].name);
  }
  const auto& usual = it->second;
  auto* extra = sock->mutable_extra();
  for (size_t i = 0; i < kCount; i++) {
    const Known& k = kKnown[i];
    if (!applies(k, family, type, protocol)) continue;
    auto value = read_option(s, k.level, k.name);
    if (!value) continue;
    if (usual[i]) {
      if (*usual[i] == *value) continue;
    } else if (value->find_first_not_of('\0') == std::string::npos) {
      continue;  // no new socket's value to compare with: zero is the usual default
    }
    auto* o = k.before_bind ? extra->add_before_bind() : extra->add_options();
    o->set_level(k.level);
    o->set_name(k.name);
    o->set_value(*value);
  }
  // Forcing the buffer sizes on restore locks them: the lock is put back
  // as it was, last.
  int lock = 0;
  socklen_t len = sizeof lock;
  if (::getsockopt(s, SOL_SOCKET, kSoBufLock, &lock, &len) == 0) {
    extra->set_has_buf_lock(true);
    extra->set_buf_lock(static_cast<uint32_t>(lock));
  }
  CRYO_TRY(dump_filter(s, extra));
  if (extra->ByteSizeLong() == 0) sock->clear_extra();
  return {};
}

Status apply_before_bind(int s, const image::Socket& sock) {
  for (const auto& o : sock.extra().before_bind()) CRYO_TRY(set_option(s, o));
  return {};
}

Status apply_extra_options(int s, const image::Socket& sock) {
  const auto& extra = sock.extra();
  CRYO_TRY(apply_before_bind(s, sock));  // again: harmless, and some sockets skip new_socket()
  for (const auto& o : extra.options()) CRYO_TRY(set_option(s, o));
  // IP_TOS and IPV6_TCLASS set the priority too: the recorded one wins.
  for (const auto& o : sock.options())
    if (o.level() == SOL_SOCKET && o.name() == SO_PRIORITY && !extra.options().empty()) CRYO_TRY(set_option(s, o));
  if (!extra.filter().empty()) {
    if (extra.filter().size() % sizeof(sock_filter) != 0 || extra.filter().size() / sizeof(sock_filter) > BPF_MAXINSNS)
      return Error(EINVAL, "bad socket filter in the image");
    std::vector<sock_filter> insns(extra.filter().size() / sizeof(sock_filter));
    std::memcpy(insns.data(), extra.filter().data(), extra.filter().size());
    sock_fprog prog{static_cast<unsigned short>(insns.size()), insns.data()};
    if (::setsockopt(s, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) return errno_error("SO_ATTACH_FILTER");
    int on = 1;
    if (extra.filter_locked() && ::setsockopt(s, SOL_SOCKET, SO_LOCK_FILTER, &on, sizeof on) < 0)
      return errno_error("SO_LOCK_FILTER");
  }
  if (extra.has_buf_lock()) {
    int lock = static_cast<int>(extra.buf_lock());
    if (::setsockopt(s, SOL_SOCKET, kSoBufLock, &lock, sizeof lock) < 0) return errno_error("SO_BUF_LOCK");
  }
  return {};
}

Status apply_shutdown(int s, const image::Socket& sock) {
  if (!sock.shutdown_read() && !sock.shutdown_write()) return {};
  int how = sock.shutdown_read() && sock.shutdown_write() ? SHUT_RDWR : sock.shutdown_read() ? SHUT_RD : SHUT_WR;
  if (::shutdown(s, how) < 0 && errno != ENOTCONN) return errno_error("shutdown");
  return {};
}

}  // namespace cryo::net
