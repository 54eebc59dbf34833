// The namespace's traffic control: only what the kernel makes by itself.
//
// Every device gets a root qdisc from the kernel (noqueue on lo and veth,
// the default qdisc, or mq and one per queue, on others), each with handle
// 0, and the restore's devices get the same. A qdisc someone added (tc
// qdisc add: netem, tbf, htb, an ingress or clsact) has a handle of its own,
// and with it classes and filters: not saved yet, so the dump refuses it,
// naming the device and the qdisc, rather than restore a namespace that
// shapes no traffic.
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include "core/ns/net/net_config.h"

namespace cryo::ns::net {

Status check_qdiscs(Rtnl& inside, const LinkNames& names) {
  tcmsg m = {};
  m.tcm_family = AF_UNSPEC;
  RtRequest req(RTM_GETQDISC, NLM_F_DUMP, &m, sizeof m);
  return inside.dump(req, [&](const nlmsghdr* h) -> Status {
    if (h->nlmsg_type != RTM_NEWQDISC) return {};
    const auto* info = payload<tcmsg>(h);
    if (TC_H_MAJ(info->tcm_handle) == 0) return {};  // the kernel's own
    auto a = attrs_of<tcmsg>(h);
    auto dev = names.by_index.find(info->tcm_ifindex);
    std::string name = dev == names.by_index.end() ? "#" + std::to_string(info->tcm_ifindex) : dev->second;
    return Error("dev " + name + ": qdisc " + a.str(TCA_KIND) + " is not supported");
  });
}

}  // namespace cryo::ns::net
