// sock_diag netlink queries: what only the kernel's socket tables know, such
// as the inode of a unix socket's peer.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/sys/result.h"

namespace cryo::net {

struct UnixInfo {
  uint64_t inode = 0;
  int type = 0;
  int state = 0;  // TCP_LISTEN, TCP_ESTABLISHED, TCP_CLOSE
  uint64_t peer = 0;
  std::string name;  // as bound; abstract names start with '\0'
  uint32_t rqueue = 0, wqueue = 0;
  uint8_t shutdown = 0;  // RCV_SHUTDOWN 1, SEND_SHUTDOWN 2
  std::vector<uint64_t> pending;  // a listener's connections not yet accepted
  uint64_t vfs_ino = 0;           // the socket file of a filesystem name
};

// Every unix socket of this network namespace, by inode.
Result<std::map<uint64_t, UnixInfo>> unix_sockets();

struct NetlinkInfo {
  uint64_t inode = 0;
  uint32_t flags = 0;     // NDIAG_FLAG_*
  uint32_t rmem = 0;      // bytes of messages not yet read
};
// Every netlink socket of this network namespace, by inode.
Result<std::map<uint64_t, NetlinkInfo>> netlink_sockets();

}  // namespace cryo::net
