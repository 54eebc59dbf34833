#include "core/net/sock_diag.h"

#include <linux/netlink.h>
#include <linux/netlink_diag.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "core/sys/fd.h"

namespace cryo::net {

Result<std::map<uint64_t, UnixInfo>> unix_sockets() {
  int s = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (s < 0) return errno_error("netlink sock_diag");
  UniqueFd fd(s);
  struct {
    nlmsghdr nlh;
    unix_diag_req req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.req.sdiag_family = AF_UNIX;
  msg.req.udiag_states = ~0u;
  msg.req.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | UDIAG_SHOW_ICONS | UDIAG_SHOW_VFS;
  if (::send(s, &msg, sizeof msg, 0) < 0) return errno_error("sock_diag request");

  std::map<uint64_t, UnixInfo> out;
  std::vector<char> buf(1 << 16);
  for (;;) {
    ssize_t n = ::recv(s, buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("sock_diag reply");
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type == NLMSG_DONE) return out;
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* err = static_cast<nlmsgerr*>(NLMSG_DATA(h));
        return Error(-err->error, "sock_diag");
      }
      auto* m = static_cast<unix_diag_msg*>(NLMSG_DATA(h));
      UnixInfo info;
      info.inode = m->udiag_ino;
      info.type = m->udiag_type;
      info.state = m->udiag_state;
      int attr_len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
      for (auto* a = reinterpret_cast<rtattr*>(m + 1); RTA_OK(a, attr_len); a = RTA_NEXT(a, attr_len)) {
        const char* data = static_cast<const char*>(RTA_DATA(a));
        size_t size = RTA_PAYLOAD(a);
        switch (a->rta_type) {
          case UNIX_DIAG_NAME:
            info.name.assign(data, size);
            // A filesystem name ends at its NUL; an abstract one starts with one.
            if (!info.name.empty() && info.name[0] != '\0') info.name = info.name.c_str();
            break;
          case UNIX_DIAG_PEER: {
            uint32_t peer;
            std::memcpy(&peer, data, sizeof peer);
            info.peer = peer;
            break;
          }
          case UNIX_DIAG_RQLEN: {
            unix_diag_rqlen q;
            std::memcpy(&q, data, sizeof q);
            info.rqueue = q.udiag_rqueue;
            info.wqueue = q.udiag_wqueue;
            break;
          }
          case UNIX_DIAG_VFS: {
            unix_diag_vfs vfs;
            if (size < sizeof vfs) break;
            std::memcpy(&vfs, data, sizeof vfs);
            info.vfs_ino = vfs.udiag_vfs_ino;
            break;
          }
          case UNIX_DIAG_SHUTDOWN:
            if (size >= 1) info.shutdown = static_cast<uint8_t>(data[0]);
            break;
          case UNIX_DIAG_ICONS:
            for (size_t i = 0; i + 4 <= size; i += 4) {
              uint32_t ino;
              std::memcpy(&ino, data + i, 4);
              info.pending.push_back(ino);
            }
            break;
        }
      }
      out[info.inode] = std::move(info);
    }
  }
}

Result<std::map<uint64_t, NetlinkInfo>> netlink_sockets() {
  int s = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (s < 0) return errno_error("netlink sock_diag");
  UniqueFd fd(s);
  struct {
    nlmsghdr nlh;
    netlink_diag_req req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.req.sdiag_family = AF_NETLINK;
  msg.req.sdiag_protocol = NDIAG_PROTO_ALL;
  msg.req.ndiag_show = NDIAG_SHOW_MEMINFO | NDIAG_SHOW_FLAGS;
  if (::send(s, &msg, sizeof msg, 0) < 0) return errno_error("sock_diag request");

  std::map<uint64_t, NetlinkInfo> out;
  std::vector<char> buf(1 << 16);
  for (;;) {
    ssize_t n = ::recv(s, buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("sock_diag reply");
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type == NLMSG_DONE) return out;
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* err = static_cast<nlmsgerr*>(NLMSG_DATA(h));
        return Error(-err->error, "sock_diag");
      }
      auto* m = static_cast<netlink_diag_msg*>(NLMSG_DATA(h));
      NetlinkInfo info;
      info.inode = m->ndiag_ino;
      int attr_len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
      for (auto* a = reinterpret_cast<rtattr*>(m + 1); RTA_OK(a, attr_len); a = RTA_NEXT(a, attr_len)) {
        const char* data = static_cast<const char*>(RTA_DATA(a));
        size_t size = RTA_PAYLOAD(a);
        if (a->rta_type == NETLINK_DIAG_FLAGS && size >= 4) std::memcpy(&info.flags, data, 4);
        if (a->rta_type == NETLINK_DIAG_MEMINFO && size >= (SK_MEMINFO_RMEM_ALLOC + 1) * 4)
          std::memcpy(&info.rmem, data + SK_MEMINFO_RMEM_ALLOC * 4, 4);
      }
      out[info.inode] = info;
    }
  }
}

}  // namespace cryo::net
