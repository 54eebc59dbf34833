// The namespace's devices: lo, veth pairs whose peer is in cryo's namespace,
// dummies. Everything else is refused by name and kind.
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/net_namespace.h>
#include <linux/veth.h>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <set>

#include <unistd.h>

#include "core/ns/net/net_config.h"

namespace cryo::ns::net {
namespace {

// The flags a restore sets back (the others are the kernel's: running, lower up...).
constexpr uint32_t kSettableFlags = IFF_UP | IFF_PROMISC | IFF_NOARP | IFF_ALLMULTI | IFF_MULTICAST | IFF_DEBUG |
                                    IFF_DYNAMIC | IFF_AUTOMEDIA;
constexpr size_t kMaxLinks = 4096;

// Tunnel devices the kernel makes in every new namespace while their module
// is loaded: the restore gets them again by itself.
bool fallback_tunnel(const std::string& kind, const std::string& name) {
  static const std::set<std::pair<std::string, std::string>> known = {
      {"ipip", "tunl0"},      {"sit", "sit0"},         {"ip6tnl", "ip6tnl0"},     {"gre", "gre0"},
      {"gretap", "gretap0"},  {"erspan", "erspan0"},   {"ip6gre", "ip6gre0"},     {"vti", "ip_vti0"},
      {"vti6", "ip6_vti0"},   {"ip6gretap", "ip6gretap0"}};
  return known.count({kind, name}) > 0;
}

std::string kind_of(const RtAttrs& a) {
  if (!a.has(IFLA_LINKINFO)) return "";
  auto info = a.bytes(IFLA_LINKINFO);
  return RtAttrs(info.data(), info.size()).str(IFLA_INFO_KIND);
}

// The id cryo's namespace has in the one rtnl is in (-1: none).
Result<int> nsid_of(Rtnl& rtnl, int ns_fd) {
  rtgenmsg g = {.rtgen_family = AF_UNSPEC};
  RtRequest req(RTM_GETNSID, NLM_F_ACK, &g, sizeof g);
  req.put_u32(NETNSA_FD, static_cast<uint32_t>(ns_fd));
  int id = -1;
  CRYO_TRY(rtnl.dump(req, [&](const nlmsghdr* h) -> Status {
    if (h->nlmsg_type == RTM_NEWNSID) id = static_cast<int>(attrs_of<rtgenmsg>(h).u32(NETNSA_NSID, ~0u));
    return {};
  }));
  return id;
}

struct Peer {
  std::string name;
  uint32_t flags = 0;
  std::string kind;
};

Result<Peer> link_by_index(Rtnl& rtnl, int index) {
  ifinfomsg m = {};
  m.ifi_index = index;
  RtRequest req(RTM_GETLINK, NLM_F_ACK, &m, sizeof m);
  Peer peer;
  CRYO_TRY(rtnl.dump(req, [&](const nlmsghdr* h) -> Status {
    if (h->nlmsg_type != RTM_NEWLINK) return {};
    auto a = attrs_of<ifinfomsg>(h);
    peer = {a.str(IFLA_IFNAME), payload<ifinfomsg>(h)->ifi_flags, kind_of(a)};
    return {};
  }));
  return peer;
}

Result<int> index_of(const std::map<std::string, int>& index, const std::string& name, const char* where) {
  auto it = index.find(name);
  if (it == index.end()) return Error(ENODEV, std::string("no network device ") + name + " in " + where);
  return it->second;
}

// A device's MAC address, MTU and queue length, where the image has them.
void put_link_settings(RtRequest& req, const image::NetLink& l) {
  std::string mac;
  if (mac_bytes(l.mac(), &mac)) req.put(IFLA_ADDRESS, mac.data(), mac.size());
  if (l.mtu()) req.put_u32(IFLA_MTU, l.mtu());
  if (l.txqlen()) req.put_u32(IFLA_TXQLEN, l.txqlen());
}

// The other end of a pair made inside: its own MAC and MTU.
Status set_peer_inside(Rtnl& inside, const image::NetLink& l) {
  CRYO_ASSIGN(auto index, link_indexes(inside));
  auto it = index.find(l.name());
  if (it == index.end()) return Error(ENODEV, "veth " + l.name() + " was not made with its peer " + l.peer_name());
  ifinfomsg m = {};
  m.ifi_index = it->second;
  RtRequest req(RTM_NEWLINK, 0, &m, sizeof m);
  put_link_settings(req, l);
  return inside.call(req).wrap("setting up veth " + l.name());
}

Status make_veth(Rtnl& inside, int cryo_ns, const image::NetLink& l, const VethPeer& peer) {
  ifinfomsg m = {};
  RtRequest req(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &m, sizeof m);
  req.put_str(IFLA_IFNAME, l.name());
  put_link_settings(req, l);
  size_t info = req.begin(IFLA_LINKINFO);
  req.put_str(IFLA_INFO_KIND, "veth");
  size_t data = req.begin(IFLA_INFO_DATA);
  size_t peer_info = req.begin(VETH_INFO_PEER);
  ifinfomsg pm = {};
  req.raw(&pm, sizeof pm);
  req.put_str(IFLA_IFNAME, peer.name);
  if (!l.peer_inside()) req.put_u32(IFLA_NET_NS_FD, static_cast<uint32_t>(cryo_ns));
  req.end(peer_info);
  req.end(data);
  req.end(info);
  // The peer's name may still be taken by the pair of the dumped tree, whose
  // namespace the kernel tears down a little after its last process is gone.
  auto made = inside.call(req);
  for (int tries = 0; tries < 40 && !made.ok() && made.error().code() == EEXIST; tries++) {
    ::usleep(50000);
    made = inside.call(req);
  }
  if (!made.ok() && made.error().code() == EEXIST)
    return Error(EEXIST, "veth " + l.name() + ": its peer " + peer.name +
                             " exists in cryo's network namespace (name another with --external veth[" + l.name() +
                             "]:NAME)");
  return std::move(made).wrap("making veth " + l.name() + " with its peer " + peer.name);
}

Status make_dummy(Rtnl& inside, const image::NetLink& l) {
  ifinfomsg m = {};
  RtRequest req(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &m, sizeof m);
  req.put_str(IFLA_IFNAME, l.name());
  put_link_settings(req, l);
  size_t info = req.begin(IFLA_LINKINFO);
  req.put_str(IFLA_INFO_KIND, "dummy");
  req.end(info);
  return inside.call(req).wrap("making dummy device " + l.name());
}

VethPeer peer_of(const image::NetLink& l, const VethPeers& peers) {
  auto it = peers.find(l.name());
  return it != peers.end() ? it->second : VethPeer{l.peer_name(), ""};
}

}  // namespace

std::string mac_text(std::string_view raw) {
  std::string out;
  char part[4];
  for (unsigned char c : raw) {
    std::snprintf(part, sizeof part, "%s%02x", out.empty() ? "" : ":", c);
    out += part;
  }
  return out;
}

bool mac_bytes(const std::string& text, std::string* raw) {
  raw->clear();
  unsigned b[6];
  char tail;
  if (std::sscanf(text.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6)
    return false;
  for (unsigned v : b) raw->push_back(static_cast<char>(v));
  return true;
}

bool valid_link_name(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ || name == "." || name == "..") return false;
  for (char c : name)
    if (c == '/' || c == ':' || c == '\0' || std::isspace(static_cast<unsigned char>(c))) return false;
  return true;
}

Status dump_links(Rtnl& inside, Rtnl& outside, int cryo_ns, image::NetNs* out, LinkNames* names) {
  ifinfomsg m = {};
  RtRequest req(RTM_GETLINK, NLM_F_DUMP, &m, sizeof m);
  struct Found {
    image::NetLink link;
    int peer_index = 0;
    int peer_nsid = -2;  // -2: no IFLA_LINK_NETNSID, the peer is in the namespace itself
  };
  std::vector<Found> found;
  CRYO_TRY(inside.dump(req, [&](const nlmsghdr* h) -> Status {
    if (h->nlmsg_type != RTM_NEWLINK) return {};
    const auto* info = payload<ifinfomsg>(h);
    auto a = attrs_of<ifinfomsg>(h);
    Found f;
    f.link.set_name(a.str(IFLA_IFNAME));
    f.link.set_ifindex(static_cast<uint32_t>(info->ifi_index));
    f.link.set_flags(info->ifi_flags & kSettableFlags);
    f.link.set_mtu(a.u32(IFLA_MTU));
    f.link.set_txqlen(a.u32(IFLA_TXQLEN));
    f.link.set_mac(mac_text(a.bytes(IFLA_ADDRESS)));
    std::string kind = kind_of(a);
    if (kind.empty() && (info->ifi_flags & IFF_LOOPBACK)) kind = "loopback";
    names->by_index[info->ifi_index] = f.link.name();
    if (fallback_tunnel(kind, f.link.name())) return {};
    if (kind != "loopback" && kind != "veth" && kind != "dummy")
      return Error("network device " + f.link.name() + " (" + (kind.empty() ? "of no kind" : kind) +
                   ") is not supported");
    f.link.set_kind(kind);
    f.peer_index = static_cast<int>(a.u32(IFLA_LINK));
    if (a.has(IFLA_LINK_NETNSID)) f.peer_nsid = static_cast<int>(a.u32(IFLA_LINK_NETNSID));
    found.push_back(std::move(f));
    return {};
  }));
  if (found.size() > kMaxLinks) return Error("more than " + std::to_string(kMaxLinks) + " network devices");
  int cryo_id = -3;
  for (auto& f : found) {
    if (f.link.kind() != "veth") continue;
    if (f.peer_nsid == -2) {  // both ends inside
      auto peer = names->by_index.find(f.peer_index);
      if (peer == names->by_index.end()) return Error("veth " + f.link.name() + ": its peer is not in the namespace");
      f.link.set_peer_name(peer->second);
      f.link.set_peer_inside(true);
      continue;
    }
    if (cryo_id == -3) {
      CRYO_ASSIGN(cryo_id, nsid_of(inside, cryo_ns));
    }
    if (f.peer_nsid != cryo_id)
      return Error("veth " + f.link.name() + ": its peer is in another network namespace than cryo's (not supported)");
    CRYO_ASSIGN(Peer peer, link_by_index(outside, f.peer_index).wrap("veth " + f.link.name() + ": its peer"));
    if (peer.kind != "veth") return Error("veth " + f.link.name() + ": its peer " + peer.name + " is no veth");
    f.link.set_peer_name(peer.name);
    f.link.set_peer_up((peer.flags & IFF_UP) != 0);
  }
  for (auto& f : found) *out->add_links() = f.link;
  return {};
}

Status validate_links(const image::NetNs& ns) {
  if (static_cast<size_t>(ns.links_size()) > kMaxLinks) return Error(EINVAL, "too many network devices");
  std::set<std::string> seen;
  for (const auto& l : ns.links()) {
    if (!valid_link_name(l.name()) || !seen.insert(l.name()).second)
      return Error(EINVAL, "network device name '" + l.name() + "' is bad or repeated");
    if (l.kind() != "loopback" && l.kind() != "veth" && l.kind() != "dummy")
      return Error(EINVAL, "network device " + l.name() + " (" + l.kind() + ") is not supported");
    if (l.kind() == "loopback" && l.name() != "lo") return Error(EINVAL, "a loopback device not named lo");
    if (l.kind() == "veth" && !valid_link_name(l.peer_name()))
      return Error(EINVAL, "veth " + l.name() + ": bad peer name '" + l.peer_name() + "'");
    if (l.peer_inside() && (l.kind() != "veth" || l.peer_name() == l.name()))
      return Error(EINVAL, "veth " + l.name() + ": a bad peer inside the namespace");
    std::string mac;
    if (!l.mac().empty() && !mac_bytes(l.mac(), &mac) && l.kind() != "loopback")
      return Error(EINVAL, "network device " + l.name() + ": bad MAC address");
  }
  std::map<std::string, const image::NetLink*> by_name;
  for (const auto& l : ns.links()) by_name[l.name()] = &l;
  for (const auto& l : ns.links()) {  // a pair inside: each end names the other
    if (!l.peer_inside()) continue;
    auto other = by_name.find(l.peer_name());
    if (other == by_name.end() || !other->second->peer_inside() || other->second->peer_name() != l.name())
      return Error(EINVAL, "veth " + l.name() + ": its peer " + l.peer_name() + " is not its pair");
  }
  return {};
}

Status make_links(Rtnl& inside, int cryo_ns, const image::NetNs& ns, const VethPeers& peers) {
  std::set<std::string> made;  // the second ends of pairs made inside
  for (const auto& l : ns.links()) {
    if (l.kind() == "veth" && made.count(l.name())) {
      CRYO_TRY(set_peer_inside(inside, l));
      continue;
    }
    if (l.kind() == "veth" && l.peer_inside()) made.insert(l.peer_name());
    if (l.kind() == "veth") CRYO_TRY(make_veth(inside, cryo_ns, l, l.peer_inside() ? VethPeer{l.peer_name(), ""} : peer_of(l, peers)));
    if (l.kind() == "dummy") CRYO_TRY(make_dummy(inside, l));
    if (l.kind() == "loopback" && l.mtu()) {
      CRYO_ASSIGN(auto index, link_indexes(inside));
      ifinfomsg m = {};
      CRYO_ASSIGN(m.ifi_index, index_of(index, "lo", "the namespace"));
      RtRequest req(RTM_NEWLINK, 0, &m, sizeof m);
      req.put_u32(IFLA_MTU, l.mtu());
      CRYO_TRY(inside.call(req).wrap("setting lo's mtu"));
    }
  }
  return {};
}

Status set_links_up(Rtnl& inside, Rtnl& outside, const image::NetNs& ns, const VethPeers& peers) {
  CRYO_ASSIGN(auto index, link_indexes(inside));
  for (const auto& l : ns.links()) {
    ifinfomsg m = {};
    CRYO_ASSIGN(m.ifi_index, index_of(index, l.name(), "the namespace"));
    m.ifi_flags = l.flags() & kSettableFlags;
    m.ifi_change = kSettableFlags;
    RtRequest req(RTM_NEWLINK, 0, &m, sizeof m);
    CRYO_TRY(inside.call(req).wrap("setting the flags of " + l.name()));
  }
  // The outer ends: up as they were, on the bridge named for them.
  CRYO_ASSIGN(auto outer_index, link_indexes(outside));
  for (const auto& l : ns.links()) {
    if (l.kind() != "veth" || l.peer_inside()) continue;
    VethPeer peer = peer_of(l, peers);
    ifinfomsg m = {};
    CRYO_ASSIGN(m.ifi_index, index_of(outer_index, peer.name, "cryo's network namespace"));
    m.ifi_flags = l.peer_up() || !peer.bridge.empty() ? IFF_UP : 0;
    m.ifi_change = IFF_UP;
    RtRequest req(RTM_NEWLINK, 0, &m, sizeof m);
    if (!peer.bridge.empty()) {
      auto bridge = outer_index.find(peer.bridge);
      if (bridge == outer_index.end()) return Error(ENODEV, "veth " + peer.name + ": no bridge " + peer.bridge);
      req.put_u32(IFLA_MASTER, static_cast<uint32_t>(bridge->second));
    }
    CRYO_TRY(outside.call(req).wrap("setting up veth " + peer.name + " in cryo's network namespace"));
  }
  return {};
}

Result<std::map<std::string, int>> link_indexes(Rtnl& rtnl) {
  ifinfomsg m = {};
  RtRequest req(RTM_GETLINK, NLM_F_DUMP, &m, sizeof m);
  std::map<std::string, int> out;
  CRYO_TRY(rtnl.dump(req, [&](const nlmsghdr* h) -> Status {
    if (h->nlmsg_type == RTM_NEWLINK) out[attrs_of<ifinfomsg>(h).str(IFLA_IFNAME)] = payload<ifinfomsg>(h)->ifi_index;
    return {};
  }));
  return out;
}

Result<std::pair<std::string, VethPeer>> parse_external_veth(const std::string& arg) {
  // veth[INNER]:OUTER[@BRIDGE]
  size_t close = arg.find("]:");
  if (!arg.starts_with("veth[") || close == std::string::npos)
    return Error(EINVAL, "--external " + arg + ": want veth[INNER]:OUTER or veth[INNER]:OUTER@BRIDGE");
  std::string inner = arg.substr(5, close - 5), rest = arg.substr(close + 2);
  VethPeer peer;
  size_t at = rest.find('@');
  peer.name = rest.substr(0, at);
  if (at != std::string::npos) peer.bridge = rest.substr(at + 1);
  if (!valid_link_name(inner) || !valid_link_name(peer.name) || (at != std::string::npos && !valid_link_name(peer.bridge)))
    return Error(EINVAL, "--external " + arg + ": not device names");
  return std::make_pair(inner, peer);
}

}  // namespace cryo::ns::net
