// TCP MD5 signature keys (RFC 2385, set with setsockopt TCP_MD5SIG, as BGP
// speakers do). No getsockopt reads them back; sock_diag shows them to a
// caller with CAP_NET_ADMIN (INET_DIAG_MD5SIG). A connection restored
// without its keys would send segments its peer drops.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "core/image/proto/files.pb.h"
#include "core/sys/result.h"

namespace cryo::net {

// The keys of the TCP sockets of this network namespace, listed once per
// family and dump.
class TcpMd5Keys {
 public:
  // Adds the keys of TCP socket `inode` (of `family`) to sock.
  Status describe(int family, uint64_t inode, image::Socket* sock);

 private:
  std::map<int, std::map<uint64_t, std::vector<image::TcpMd5Key>>> tables_;
};

// Sets sock's keys on s, a TCP socket just made for it (before it binds,
// listens or connects: its first segment is signed).
Status restore_md5_keys(int s, const image::Socket& sock);

}  // namespace cryo::net
