// The namespace's IPv4 and IPv6 addresses.
#include <linux/if_addr.h>
#include <sys/socket.h>

#include <set>

#include "core/ns/net/net_config.h"

namespace cryo::ns::net {
namespace {

// The flags an address is given back with; the rest are the kernel's
// (permanent, secondary, tentative...).
constexpr uint32_t kKeptFlags = IFA_F_NODAD | IFA_F_HOMEADDRESS | IFA_F_MANAGETEMPADDR | IFA_F_NOPREFIXROUTE |
                                IFA_F_MCAUTOJOIN;
constexpr int kMaxAddrs = 65536;

int family_of(const std::string& text) { return text.find(':') != std::string::npos ? AF_INET6 : AF_INET; }

}  // namespace

Status dump_addrs(Rtnl& inside, const LinkNames& names, image::NetNs* out) {
  ifaddrmsg m = {};
  RtRequest req(RTM_GETADDR, NLM_F_DUMP, &m, sizeof m);
  std::set<std::string> kept;
  for (const auto& l : out->links()) kept.insert(l.name());
  return inside.dump(req, [&](const nlmsghdr* h) -> Status {
    if (h->nlmsg_type != RTM_NEWADDR) return {};
    const auto* info = payload<ifaddrmsg>(h);
    if (info->ifa_family != AF_INET && info->ifa_family != AF_INET6) return {};
    auto a = attrs_of<ifaddrmsg>(h);
    auto dev = names.by_index.find(static_cast<int>(info->ifa_index));
    if (dev == names.by_index.end() || !kept.count(dev->second)) return {};  // a fallback tunnel's
    uint32_t flags = a.u32(IFA_FLAGS, info->ifa_flags);
    // Addresses that come and go by themselves (SLAAC, privacy ones) come back the same way.
    if (info->ifa_family == AF_INET6 && !(flags & IFA_F_PERMANENT)) return {};
    if (out->addrs_size() >= kMaxAddrs) return Error("more than " + std::to_string(kMaxAddrs) + " addresses");
    auto* addr = out->add_addrs();
    addr->set_dev(dev->second);
    std::string_view local = a.has(IFA_LOCAL) ? a.bytes(IFA_LOCAL) : a.bytes(IFA_ADDRESS);
    addr->set_local(addr_text(info->ifa_family, local));
    if (a.has(IFA_LOCAL) && a.has(IFA_ADDRESS) && a.bytes(IFA_LOCAL) != a.bytes(IFA_ADDRESS))
      addr->set_peer(addr_text(info->ifa_family, a.bytes(IFA_ADDRESS)));
    if (a.has(IFA_BROADCAST)) addr->set_broadcast(addr_text(info->ifa_family, a.bytes(IFA_BROADCAST)));
    addr->set_prefixlen(info->ifa_prefixlen);
    addr->set_scope(info->ifa_scope);
    addr->set_flags(flags & kKeptFlags);
    if (a.has(IFA_LABEL)) addr->set_label(a.str(IFA_LABEL));
    return {};
  });
}

Status make_addrs(Rtnl& inside, const std::map<std::string, int>& index, const image::NetNs& ns) {
  if (ns.addrs_size() > kMaxAddrs) return Error(EINVAL, "too many addresses");
  for (const auto& addr : ns.addrs()) {
    std::string what = "address " + addr.local() + "/" + std::to_string(addr.prefixlen()) + " on " + addr.dev();
    int family = family_of(addr.local());
    std::string local, peer, broadcast;
    auto dev = index.find(addr.dev());
    if (dev == index.end()) return Error(EINVAL, what + ": no such device in the image");
    if (!addr_bytes(family, addr.local(), &local) || (!addr.peer().empty() && !addr_bytes(family, addr.peer(), &peer)) ||
        (!addr.broadcast().empty() && !addr_bytes(family, addr.broadcast(), &broadcast)) ||
        addr.prefixlen() > (family == AF_INET ? 32u : 128u) || addr.scope() > 255 ||
        (!addr.label().empty() && (addr.label().size() >= 16 || addr.label().find('\0') != std::string::npos)))
      return Error(EINVAL, what + ": bad in the image");
    ifaddrmsg m = {};
    m.ifa_family = static_cast<uint8_t>(family);
    m.ifa_prefixlen = static_cast<uint8_t>(addr.prefixlen());
    m.ifa_scope = static_cast<uint8_t>(addr.scope());
    m.ifa_index = static_cast<uint32_t>(dev->second);
    RtRequest req(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &m, sizeof m);
    req.put(IFA_LOCAL, local.data(), local.size());
    req.put(IFA_ADDRESS, peer.empty() ? local.data() : peer.data(), local.size());
    if (!broadcast.empty()) req.put(IFA_BROADCAST, broadcast.data(), broadcast.size());
    if (!addr.label().empty()) req.put_str(IFA_LABEL, addr.label());
    // An IPv6 address was valid at dump time: no duplicate detection, or it
    // would stay tentative for a while and the tree's sockets could not bind it.
    uint32_t flags = addr.flags() & kKeptFlags;
    if (family == AF_INET6) flags |= IFA_F_NODAD;
    req.put_u32(IFA_FLAGS, flags);
    auto made = inside.call(req);
    if (!made.ok() && made.error().code() == EEXIST) continue;  // lo's own, a link-local one the kernel made
    CRYO_TRY(std::move(made).wrap(what));
  }
  return {};
}

}  // namespace cryo::ns::net
