// The namespace's permanent neighbour entries (ARP, NDP): the ones someone
// added; the others are a cache the kernel fills again.
#include <linux/neighbour.h>
#include <sys/socket.h>

#include "core/ns/net/net_config.h"

namespace cryo::ns::net {
namespace {

constexpr int kMaxNeighs = 65536;

}  // namespace

Status dump_neighs(Rtnl& inside, const LinkNames& names, image::NetNs* out) {
  ndmsg m = {};
  RtRequest req(RTM_GETNEIGH, NLM_F_DUMP, &m, sizeof m);
  return inside.dump(req, [&](const nlmsghdr* h) -> Status {
    if (h->nlmsg_type != RTM_NEWNEIGH) return {};
    const auto* info = payload<ndmsg>(h);
    if (!(info->ndm_state & NUD_PERMANENT) || (info->ndm_family != AF_INET && info->ndm_family != AF_INET6)) return {};
    auto a = attrs_of<ndmsg>(h);
    auto dev = names.by_index.find(info->ndm_ifindex);
    std::string dst = addr_text(info->ndm_family, a.bytes(NDA_DST));
    if (dev == names.by_index.end() || dst.empty()) return {};
    if (info->ndm_flags & NTF_PROXY)
      return Error("proxy neighbour entry " + dst + " on " + dev->second + " (not supported)");
    if (out->neighs_size() >= kMaxNeighs) return Error("too many neighbour entries");
    auto* n = out->add_neighs();
    n->set_dev(dev->second);
    n->set_dst(dst);
    n->set_lladdr(mac_text(a.bytes(NDA_LLADDR)));
    n->set_flags(info->ndm_flags & NTF_ROUTER);
    return {};
  });
}

Status make_neighs(Rtnl& inside, const std::map<std::string, int>& index, const image::NetNs& ns) {
  if (ns.neighs_size() > kMaxNeighs) return Error(EINVAL, "too many neighbour entries");
  for (const auto& n : ns.neighs()) {
    std::string what = "neighbour " + n.dst() + " on " + n.dev();
    int family = n.dst().find(':') != std::string::npos ? AF_INET6 : AF_INET;
    std::string dst, lladdr;
    auto dev = index.find(n.dev());
    if (dev == index.end() || !addr_bytes(family, n.dst(), &dst) || (!n.lladdr().empty() && !mac_bytes(n.lladdr(), &lladdr)))
      return Error(EINVAL, what + ": bad in the image");
    ndmsg m = {};
    m.ndm_family = static_cast<uint8_t>(family);
    m.ndm_ifindex = dev->second;
    m.ndm_state = NUD_PERMANENT;
    m.ndm_flags = static_cast<uint8_t>(n.flags() & NTF_ROUTER);
    RtRequest req(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, &m, sizeof m);
    req.put(NDA_DST, dst.data(), dst.size());
    if (!lladdr.empty()) req.put(NDA_LLADDR, lladdr.data(), lladdr.size());
    CRYO_TRY(inside.call(req).wrap(what));
  }
  return {};
}

}  // namespace cryo::ns::net
