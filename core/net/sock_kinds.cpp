#include "core/net/sock_kinds.h"

#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstring>
#include <sstream>

#include "core/net/sock_diag.h"
#include "core/sys/io.h"

namespace cryo::net {
namespace {

constexpr uint8_t kRcvShutdown = 1, kSendShutdown = 2;  // sk_shutdown bits, as INET_DIAG_SHUTDOWN shows them

bool is_udp_kind(int protocol) { return protocol == IPPROTO_UDP || protocol == IPPROTO_UDPLITE; }
bool is_ping(int type, int protocol) {
  return type == SOCK_DGRAM && (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6);
}

const char* kind_name(int type, int protocol) {
  if (type == SOCK_RAW) return "raw";
  if (protocol == IPPROTO_UDPLITE) return "UDP-lite";
  if (is_ping(type, protocol)) return "ping";
  return "UDP";
}

// A connected ping socket has no peer port, so getpeername says ENOTCONN;
// /proc/net/icmp and icmp6 show its peer ("0100007F:0000", the address's
// bytes as 32-bit words) and state. Returns whether the line of `inode`
// was found connected, and its peer.
bool ping_peer(const std::string& table, uint64_t inode, int family, image::SockAddr* peer) {
  std::istringstream lines(table);
  std::string line;
  std::getline(lines, line);  // the header
  while (std::getline(lines, line)) {
    std::istringstream f(line);
    std::string slot, local, remote, st, queues, timer, retrans, uid, timeout;
    uint64_t ino = 0;
    if (!(f >> slot >> local >> remote >> st >> queues >> timer >> retrans >> uid >> timeout >> ino) || ino != inode)
      continue;
    size_t colon = remote.find(':');
    size_t words = family == AF_INET6 ? 4 : 1;
    if (colon != words * 8 || std::strtoul(st.c_str(), nullptr, 16) != 1) return false;  // 1: TCP_ESTABLISHED
    std::string addr;
    for (size_t w = 0; w < words; w++) {
      uint32_t word = static_cast<uint32_t>(std::strtoul(remote.substr(w * 8, 8).c_str(), nullptr, 16));
      addr.append(reinterpret_cast<const char*>(&word), 4);
    }
    peer->set_family(static_cast<uint32_t>(family));
    peer->set_addr(addr);
    return true;
  }
  return false;
}

}  // namespace

bool is_inet_datagram(int family, int type, int protocol) {
  if (family != AF_INET && family != AF_INET6) return false;
  if (type == SOCK_RAW) return true;
  return type == SOCK_DGRAM && (is_udp_kind(protocol) || is_ping(type, protocol));
}

bool is_inet_datagram(const image::Socket& sock) {
  return is_inet_datagram(static_cast<int>(sock.family()), static_cast<int>(sock.type()),
                          static_cast<int>(sock.protocol()));
}

bool keeps_queue(const image::Socket& sock) {
  return sock.type() == SOCK_DGRAM && is_udp_kind(static_cast<int>(sock.protocol()));
}

Result<const DatagramState::Info*> DatagramState::find(int family, int protocol, uint64_t inode) {
  auto key = std::make_pair(family, protocol);
  auto it = tables_.find(key);
  if (it == tables_.end()) {
    inet_diag_req_v2 req{};
    req.sdiag_family = static_cast<uint8_t>(family);
    req.sdiag_protocol = static_cast<uint8_t>(protocol);
    req.idiag_states = ~0u;
    std::map<uint64_t, Info> table;
    CRYO_TRY(diag_dump(&req, sizeof req, [&](const nlmsghdr* h) {
      const auto* m = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
      Info info;
      info.wqueue = m->idiag_wqueue;
      for_each_attr<inet_diag_msg>(h, [&](int type, const char* data, size_t size) {
        if (type == INET_DIAG_SHUTDOWN && size >= 1) info.shutdown = static_cast<uint8_t>(data[0]);
      });
      table[m->idiag_inode] = info;
    }).wrap("listing the UDP sockets"));
    it = tables_.emplace(key, std::move(table)).first;
  }
  auto found = it->second.find(inode);
  if (found == it->second.end()) return Error("socket " + std::to_string(inode) + " is not in sock_diag");
  return &found->second;
}

Status DatagramState::describe(const std::string& what, int s, uint64_t inode, image::Socket* sock) {
  int family = static_cast<int>(sock->family()), type = static_cast<int>(sock->type());
  int protocol = static_cast<int>(sock->protocol());
  std::string kind = kind_name(type, protocol);
  // sock_diag lists bound UDP sockets only; one never bound has sent
  // nothing (a send binds it) and is looked at like a ping socket below.
  if (type == SOCK_DGRAM && is_udp_kind(protocol) && sock->local().port() != 0) {
    CRYO_ASSIGN(const Info* info, find(family, protocol, inode).wrap(what));
    sock->set_shutdown_read(info->shutdown & kRcvShutdown);
    sock->set_shutdown_write(info->shutdown & kSendShutdown);
    // A corked datagram (UDP_CORK, or sent with MSG_MORE) waits in the
    // socket's pending queue, which no interface lets anyone read; the same
    // count covers datagrams still on their way out, gone in a moment.
    if (info->wqueue > 0)
      return Error(what + ": " + kind + " socket holds " + std::to_string(info->wqueue) +
                   " bytes not yet sent (a datagram corked with UDP_CORK or MSG_MORE cannot be saved: "
                   "dump again once it is sent)");
    return {};
  }
  // No sock_diag for ping sockets, nor (on this kernel configuration) for raw
  // ones: poll shows a closed read side (POLLRDHUP) and both sides (POLLHUP).
  // A write side shut alone changes nothing for them and shows nowhere.
  if (is_ping(type, protocol) && sock->state() != image::Socket::CONNECTED) {
    CRYO_ASSIGN(std::string table, read_file(family == AF_INET6 ? "/proc/net/icmp6" : "/proc/net/icmp"));
    if (ping_peer(table, inode, family, sock->mutable_peer())) sock->set_state(image::Socket::CONNECTED);
    else sock->clear_peer();
  }
  pollfd p{s, POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, 0) < 0) return errno_error(what + ": poll");
  sock->set_shutdown_read(p.revents & (POLLRDHUP | POLLHUP));
  sock->set_shutdown_write(p.revents & POLLHUP);
  if (keeps_queue(*sock)) return {};  // an unbound UDP socket: nothing can be queued
  int queued = 0;
  if (::ioctl(s, FIONREAD, &queued) < 0 && errno != ENOTTY) return errno_error(what + ": FIONREAD");  // ping: ENOTTY
  char byte;
  ssize_t waiting = ::recv(s, &byte, 1, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC);
  if (queued > 0 || waiting > 0)
    return Error(what + ": " + kind + " socket has packets not yet read (they cannot be made again: dump "
                 "again once they are read)");
  return {};
}

}  // namespace cryo::net
