#include "core/net/tcp_md5.h"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstring>
#include <string>

#include "core/net/sock_diag.h"

namespace cryo::net {
namespace {

// struct tcp_diag_md5sig of <linux/tcp.h>, which clashes with <netinet/tcp.h>.
struct DiagMd5Key {
  uint8_t family;
  uint8_t prefixlen;
  uint16_t keylen;
  uint32_t addr[4];  // network order; IPv4 in the first word
  uint8_t key[TCP_MD5SIG_MAXKEYLEN];
};
static_assert(sizeof(DiagMd5Key) == 100);

}  // namespace

Status TcpMd5Keys::describe(int family, uint64_t inode, image::Socket* sock) {
  auto table = tables_.find(family);
  if (table == tables_.end()) {
    inet_diag_req_v2 req{};
    req.sdiag_family = static_cast<uint8_t>(family);
    req.sdiag_protocol = IPPROTO_TCP;
    req.idiag_states = ~0u;
    // The keys come to CAP_NET_ADMIN with what INET_DIAG_INFO asks for.
    req.idiag_ext = 1 << (INET_DIAG_INFO - 1);
    std::map<uint64_t, std::vector<image::TcpMd5Key>> keys;
    CRYO_TRY(diag_dump(&req, sizeof req, [&](const nlmsghdr* h) {
      const auto* m = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
      for_each_attr<inet_diag_msg>(h, [&](int type, const char* data, size_t size) {
        if (type != INET_DIAG_MD5SIG) return;
        for (size_t at = 0; at + sizeof(DiagMd5Key) <= size; at += sizeof(DiagMd5Key)) {
          DiagMd5Key d;
          std::memcpy(&d, data + at, sizeof d);
          image::TcpMd5Key k;
          k.set_family(d.family);
          k.set_addr(reinterpret_cast<const char*>(d.addr), d.family == AF_INET6 ? 16 : 4);
          k.set_prefixlen(d.prefixlen);
          k.set_key(reinterpret_cast<const char*>(d.key), std::min<size_t>(d.keylen, sizeof d.key));
          keys[m->idiag_inode].push_back(std::move(k));
        }
      });
    }).wrap("listing the TCP sockets' MD5 keys"));
    table = tables_.emplace(family, std::move(keys)).first;
  }
  auto found = table->second.find(inode);
  if (found != table->second.end())
    for (const auto& k : found->second) *sock->add_md5_keys() = k;
  return {};
}

Status restore_md5_keys(int s, const image::Socket& sock) {
  for (const auto& k : sock.md5_keys()) {
    struct tcp_md5sig sig {};
    size_t addr_bytes = k.family() == AF_INET6 ? 16 : 4;
    if ((k.family() != AF_INET && k.family() != AF_INET6) || k.addr().size() != addr_bytes ||
        k.key().size() > TCP_MD5SIG_MAXKEYLEN || k.prefixlen() > addr_bytes * 8)
      return Error(EINVAL, "a bad TCP MD5 key");
    if (k.family() == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&sig.tcpm_addr);
      a->sin6_family = AF_INET6;
      std::memcpy(&a->sin6_addr, k.addr().data(), 16);
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&sig.tcpm_addr);
      a->sin_family = AF_INET;
      std::memcpy(&a->sin_addr, k.addr().data(), 4);
    }
    sig.tcpm_flags = TCP_MD5SIG_FLAG_PREFIX;
    sig.tcpm_prefixlen = static_cast<uint8_t>(k.prefixlen());
    sig.tcpm_keylen = static_cast<uint16_t>(k.key().size());
    std::memcpy(sig.tcpm_key, k.key().data(), k.key().size());
    if (::setsockopt(s, IPPROTO_TCP, TCP_MD5SIG_EXT, &sig, sizeof sig) < 0)
      return errno_error("setsockopt TCP_MD5SIG_EXT (an MD5 key of the connection)");
  }
  return {};
}

}  // namespace cryo::net
