// The configuration of a network namespace: its devices (lo, veth, dummy),
// addresses, routes, rules, sysctls and firewall. The dump reads them with
// cryo's thread inside the namespace; the restore makes them again in a new
// one, in this order: links (down), sysctls, links up, qdiscs, addresses,
// neighbours, routes, rules, firewall, before the tree's sockets are made
// inside.
//
// A veth's peer outside the namespace is external, as in CRIU: it is made
// again in cryo's network namespace under its dumped name (or the one
// --external veth[INNER]:OUTER gives, with @BRIDGE to attach it to a bridge);
// its addresses and routes are the host's business.
#pragma once

#include <map>
#include <string>

#include "core/image/proto/tree.pb.h"
#include "core/ns/net/options.h"
#include "core/ns/net/rtnl.h"
#include "core/sys/result.h"

namespace cryo::ns::net {

Result<std::pair<std::string, VethPeer>> parse_external_veth(const std::string& arg);

// With the calling thread inside the namespace; outside is a socket of
// cryo's own namespace (cryo_ns), where a veth's peer must be. Refuses what
// it cannot make again.
Status dump_config(Rtnl& outside, int cryo_ns, image::NetNs* out);

// A hostile image cannot name paths or devices it should not.
Status validate_config(const image::NetNs& ns);

// Makes the configuration in the namespace of ns_fd (new, with lo alone),
// the calling thread in cryo's namespace, whose fd is cryo_ns.
Status restore_config(const image::NetNs& ns, int ns_fd, int cryo_ns, const NetNsRestoreOptions& options);

// --- The parts (one file each). ---
struct LinkNames {
  std::map<int, std::string> by_index;  // in the namespace at dump time
};
Status dump_links(Rtnl& inside, Rtnl& outside, int cryo_ns, image::NetNs* out, LinkNames* names);
Status dump_addrs(Rtnl& inside, const LinkNames& names, image::NetNs* out);
Status dump_routes(Rtnl& inside, const LinkNames& names, image::NetNs* out);
Status dump_rules(Rtnl& inside, image::NetNs* out);
Status dump_neighs(Rtnl& inside, const LinkNames& names, image::NetNs* out);
Status dump_sysctls(image::NetNs* out);
Status dump_firewall(image::NetFirewall* out);
// The qdiscs someone added (tc qdisc add) and htb's classes; refuses other
// kinds and filters.
Status dump_qdiscs(Rtnl& inside, const LinkNames& names, image::NetNs* out);

Status validate_links(const image::NetNs& ns);
Status validate_rules(const image::NetNs& ns);
Status validate_sysctls(const image::NetNs& ns);
Status validate_qdiscs(const image::NetNs& ns);

// In the namespace (inside: a socket there), from cryo's (the thread).
Status make_links(Rtnl& inside, int cryo_ns, const image::NetNs& ns, const VethPeers& peers);
Status set_links_up(Rtnl& inside, Rtnl& outside, const image::NetNs& ns, const VethPeers& peers);
Result<std::map<std::string, int>> link_indexes(Rtnl& rtnl);
Status make_addrs(Rtnl& inside, const std::map<std::string, int>& index, const image::NetNs& ns);
Status make_routes(Rtnl& inside, const std::map<std::string, int>& index, const image::NetNs& ns);
Status make_rules(Rtnl& inside, const image::NetNs& ns);
Status make_neighs(Rtnl& inside, const std::map<std::string, int>& index, const image::NetNs& ns);
Status make_qdiscs(Rtnl& inside, const std::map<std::string, int>& index, const image::NetNs& ns);
// These two with the calling thread inside the namespace.
Status write_sysctls(const image::NetNs& ns, bool weak);
Status load_firewall(const image::NetFirewall& fw);

// A device name the kernel would take (and one safe in a /proc/sys path).
bool valid_link_name(const std::string& name);
std::string mac_text(std::string_view raw);
bool mac_bytes(const std::string& text, std::string* raw);

}  // namespace cryo::ns::net
