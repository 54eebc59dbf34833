// Datagram kinds of AF_INET/AF_INET6 beyond plain UDP: UDP-lite, ICMP "ping"
// sockets (SOCK_DGRAM with IPPROTO_ICMP or IPPROTO_ICMPV6) and raw sockets.
// They are dumped and restored by the UDP path of socket_dump.cpp and
// socket_restore.cpp (address, peer, options, queue); this module adds what
// differs: their shutdown state, the corked data UDP cannot give back, and
// which queues can be kept.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "core/image/proto/files.pb.h"
#include "core/sys/result.h"

namespace cryo::net {

// UDP, UDP-lite, ping and raw sockets of IPv4 and IPv6.
bool is_inet_datagram(int family, int type, int protocol);

// The same, for a socket of the image.
bool is_inet_datagram(const image::Socket& sock);

// Whether the receive queue of such a socket is saved and refilled. UDP and
// UDP-lite datagrams are sent again from their sender's address; a ping
// socket's echo replies and a raw socket's packets cannot be made again, so
// a dump with some of them unread is refused.
bool keeps_queue(const image::Socket& sock);

// What sock_diag knows of the UDP and UDP-lite sockets of this network
// namespace, listed once per dump.
class DatagramState {
 public:
  // Records the shutdown state of s into sock; refuses data corked in a UDP
  // socket (UDP_CORK or MSG_MORE: the kernel keeps it where no one can read
  // it) and, for ping and raw sockets, packets not yet read.
  Status describe(const std::string& what, int s, uint64_t inode, image::Socket* sock);

 private:
  struct Info {
    uint8_t shutdown = 0;
    uint32_t wqueue = 0;
  };
  Result<const Info*> find(int family, int protocol, uint64_t inode);
  std::map<std::pair<int, int>, std::map<uint64_t, Info>> tables_;
};

}  // namespace cryo::net
