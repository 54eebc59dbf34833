// sock_diag netlink queries: what only the kernel's socket tables know, such
// as the inode of a unix socket's peer.
#pragma once

#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/sys/result.h"

namespace cryo::net {

// Sends one SOCK_DIAG_BY_FAMILY dump request (`req`, a *_diag_req) and hands
// each answer to `each`, until NLMSG_DONE.
Status diag_dump(const void* req, size_t req_size, const std::function<void(const nlmsghdr*)>& each);

// The attributes after a diag message of type M.
template <typename M, typename F>
void for_each_attr(const nlmsghdr* h, F f) {
  const auto* m = static_cast<const M*>(NLMSG_DATA(h));
  int attr_len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
  for (auto* a = reinterpret_cast<const rtattr*>(m + 1); RTA_OK(a, attr_len); a = RTA_NEXT(a, attr_len))
    f(a->rta_type, static_cast<const char*>(RTA_DATA(a)), static_cast<size_t>(RTA_PAYLOAD(a)));
}

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
  uint64_t vfs_dev = 0;           // and its device (the kernel's encoding)
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
