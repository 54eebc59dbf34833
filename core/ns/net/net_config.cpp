#include "core/ns/net/net_config.h"

#include <linux/if.h>

#include "core/ns/net_ns.h"

namespace cryo::ns::net {

Status dump_config(Rtnl& outside, int cryo_ns, image::NetNs* out) {
  CRYO_ASSIGN(Rtnl inside, Rtnl::open());
  LinkNames names;
  CRYO_TRY(dump_links(inside, outside, cryo_ns, out, &names));
  CRYO_TRY(dump_addrs(inside, names, out).wrap("reading its addresses"));
  CRYO_TRY(dump_routes(inside, names, out));
  CRYO_TRY(dump_rules(inside, out).wrap("reading its rules"));
  CRYO_TRY(dump_neighs(inside, names, out));
  CRYO_TRY(dump_qdiscs(inside, names, out));
  CRYO_TRY(dump_sysctls(out));
  CRYO_TRY(dump_firewall(out->mutable_firewall()));
  for (const auto& l : out->links())
    if (l.kind() == "loopback") out->set_lo_up((l.flags() & IFF_UP) != 0);  // for an older cryo
  return {};
}

Status validate_config(const image::NetNs& ns) {
  CRYO_TRY(validate_links(ns));
  CRYO_TRY(validate_rules(ns));
  CRYO_TRY(validate_sysctls(ns));
  CRYO_TRY(validate_qdiscs(ns));
  if (!ns.external_key().empty() && (ns.links_size() > 0 || ns.empty()))
    return Error(EINVAL, "an external network namespace with a configuration");
  return {};
}

Status restore_config(const image::NetNs& ns, int ns_fd, int cryo_ns, const NetNsRestoreOptions& options) {
  const VethPeers& peers = options.veths;
  CRYO_ASSIGN(Rtnl outside, Rtnl::open());
  Rtnl inside;
  {
    CRYO_ASSIGN(auto scope, Scope::enter(ns_fd, CLONE_NEWNET));
    CRYO_ASSIGN(inside, Rtnl::open());
  }
  CRYO_TRY(make_links(inside, cryo_ns, ns, peers));
  {
    CRYO_ASSIGN(auto scope, Scope::enter(ns_fd, CLONE_NEWNET));
    CRYO_TRY(write_sysctls(ns, options.weak_sysctls));
  }
  CRYO_TRY(set_links_up(inside, outside, ns, peers));
  CRYO_ASSIGN(auto index, link_indexes(inside));
  CRYO_TRY(make_qdiscs(inside, index, ns));
  CRYO_TRY(make_addrs(inside, index, ns));
  CRYO_TRY(make_neighs(inside, index, ns));
  CRYO_TRY(make_routes(inside, index, ns));
  CRYO_TRY(make_rules(inside, ns));
  CRYO_ASSIGN(auto scope, Scope::enter(ns_fd, CLONE_NEWNET));
  return load_firewall(ns.firewall());
}

}  // namespace cryo::ns::net
