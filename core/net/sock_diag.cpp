#include "core/net/sock_diag.h"

#include <linux/netlink.h>
#include <linux/netlink_diag.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <functional>

#include "core/sys/fd.h"

namespace cryo::net {

Status diag_dump(const void* req, size_t req_size, const std::function<void(const nlmsghdr*)>& each) {
  UniqueFd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!fd.valid()) return errno_error("netlink sock_diag");
  std::vector<char> msg(NLMSG_LENGTH(req_size));
  auto* nlh = reinterpret_cast<nlmsghdr*>(msg.data());
  nlh->nlmsg_len = static_cast<uint32_t>(msg.size());
  nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  std::memcpy(NLMSG_DATA(nlh), req, req_size);
  if (::send(fd.get(), msg.data(), msg.size(), 0) < 0) return errno_error("sock_diag request");

  std::vector<char> buf(1 << 16);
  for (;;) {
    ssize_t n = ::recv(fd.get(), buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("sock_diag reply");
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type == NLMSG_DONE) return {};
      if (h->nlmsg_type == NLMSG_ERROR) return Error(-static_cast<nlmsgerr*>(NLMSG_DATA(h))->error, "sock_diag");
      each(h);
    }
  }
}

Result<std::map<uint64_t, UnixInfo>> unix_sockets() {
  unix_diag_req req{};
  req.sdiag_family = AF_UNIX;
  req.udiag_states = ~0u;
  req.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | UDIAG_SHOW_ICONS | UDIAG_SHOW_VFS;
  std::map<uint64_t, UnixInfo> out;
  CRYO_TRY(diag_dump(&req, sizeof req, [&](const nlmsghdr* h) {
    const auto* m = static_cast<const unix_diag_msg*>(NLMSG_DATA(h));
    UnixInfo info;
    info.inode = m->udiag_ino;
    info.type = m->udiag_type;
    info.state = m->udiag_state;
    for_each_attr<unix_diag_msg>(h, [&](int type, const char* data, size_t size) {
      switch (type) {
        case UNIX_DIAG_NAME:
          info.name.assign(data, size);
          // A filesystem name ends at its NUL; an abstract one starts with one.
          if (!info.name.empty() && info.name[0] != '\0') info.name = info.name.c_str();
          break;
        case UNIX_DIAG_PEER:
          if (size >= 4) {
            uint32_t peer;
            std::memcpy(&peer, data, sizeof peer);
            info.peer = peer;
          }
          break;
        case UNIX_DIAG_RQLEN:
          if (size >= sizeof(unix_diag_rqlen)) {
            unix_diag_rqlen q;
            std::memcpy(&q, data, sizeof q);
            info.rqueue = q.udiag_rqueue;
            info.wqueue = q.udiag_wqueue;
          }
          break;
        case UNIX_DIAG_VFS:
          if (size >= sizeof(unix_diag_vfs)) {
            unix_diag_vfs vfs;
            std::memcpy(&vfs, data, sizeof vfs);
            info.vfs_ino = vfs.udiag_vfs_ino;
            info.vfs_dev = vfs.udiag_vfs_dev;
          }
          break;
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
    });
    out[info.inode] = std::move(info);
  }));
  return out;
}

Result<std::map<uint64_t, NetlinkInfo>> netlink_sockets() {
  netlink_diag_req req{};
  req.sdiag_family = AF_NETLINK;
  req.sdiag_protocol = NDIAG_PROTO_ALL;
  req.ndiag_show = NDIAG_SHOW_MEMINFO | NDIAG_SHOW_FLAGS;
  std::map<uint64_t, NetlinkInfo> out;
  CRYO_TRY(diag_dump(&req, sizeof req, [&](const nlmsghdr* h) {
    NetlinkInfo info;
    info.inode = static_cast<const netlink_diag_msg*>(NLMSG_DATA(h))->ndiag_ino;
    for_each_attr<netlink_diag_msg>(h, [&](int type, const char* data, size_t size) {
      if (type == NETLINK_DIAG_FLAGS && size >= 4) std::memcpy(&info.flags, data, 4);
      if (type == NETLINK_DIAG_MEMINFO && size >= (SK_MEMINFO_RMEM_ALLOC + 1) * 4)
        std::memcpy(&info.rmem, data + SK_MEMINFO_RMEM_ALLOC * 4, 4);
    });
    out[info.inode] = info;
  }));
  return out;
}

}  // namespace cryo::net
