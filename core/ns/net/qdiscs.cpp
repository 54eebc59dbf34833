// The namespace's traffic control.
//
// Every device gets a root qdisc from the kernel (noqueue on lo and veth,
// the default qdisc, or mq and one per queue, on others), each with handle
// 0, and the restore's devices get the same. A qdisc someone added (tc
// qdisc add) has a handle of its own: those of the kinds below are saved
// with their options as the kernel dumps them (which it takes back on
// creation), and an htb's classes with theirs, and made again parents
// first. Other kinds (netem, fq_codel, an ingress or clsact, cake...) and filters
// (tc filter add) refuse the dump, naming the device and the qdisc, rather
// than restore a namespace that shapes or classifies no traffic.
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <cstring>
#include <set>

#include "core/ns/net/net_config.h"

namespace cryo::ns::net {
namespace {

constexpr int kMaxQdiscs = 4096;

bool saved_kind(const std::string& kind) {
  // Those whose dumped options were seen to make the same qdisc again (the
  // others, netem and fq_codel among them, could not be tried on the kernel
  // cryo is tested on, which lacks them).
  static const std::set<std::string> kinds = {"tbf", "htb", "pfifo", "bfifo"};
  return kinds.count(kind) > 0;
}

std::string handle_text(uint32_t h) {
  char buf[32];
  snprintf(buf, sizeof buf, "%x:%x", TC_H_MAJ(h) >> 16, TC_H_MIN(h));
  return buf;
}

std::string dev_name(const LinkNames& names, int ifindex) {
  auto dev = names.by_index.find(ifindex);
  return dev == names.by_index.end() ? "#" + std::to_string(ifindex) : dev->second;
}

// Refuses the filters attached to a qdisc or class of a device.
Status check_filters(Rtnl& inside, int ifindex, uint32_t parent, const std::string& what) {
  tcmsg m = {};
  m.tcm_family = AF_UNSPEC;
  m.tcm_ifindex = ifindex;
  m.tcm_parent = parent;
  RtRequest req(RTM_GETTFILTER, NLM_F_DUMP, &m, sizeof m);
  return inside.dump(req, [&](const nlmsghdr* h) -> Status {
    if (h->nlmsg_type != RTM_NEWTFILTER) return {};
    return Error(what + ": filter " + attrs_of<tcmsg>(h).str(TCA_KIND) + " is not supported");
  });
}

// htb dumps its whole version (0x30011) where it takes the major one alone (3).
constexpr uint32_t kHtbMajorVersion = 3;
void fix_htb_init(std::string* options) {
  for (size_t at = 0; at + sizeof(rtattr) <= options->size();) {
    rtattr a;
    std::memcpy(&a, options->data() + at, sizeof a);
    if (a.rta_len < sizeof a || at + a.rta_len > options->size()) return;
    if (a.rta_type == TCA_HTB_INIT && a.rta_len >= RTA_LENGTH(sizeof(tc_htb_glob))) {
      tc_htb_glob g;
      std::memcpy(&g, options->data() + at + RTA_LENGTH(0), sizeof g);
      g.version = kHtbMajorVersion;
      g.direct_pkts = 0;
      std::memcpy(options->data() + at + RTA_LENGTH(0), &g, sizeof g);
    }
    at += RTA_ALIGN(a.rta_len);
  }
}

}  // namespace

Status dump_qdiscs(Rtnl& inside, const LinkNames& names, image::NetNs* out) {
  std::vector<std::pair<int, uint32_t>> htbs;  // (ifindex, handle)
  std::vector<std::pair<int, uint32_t>> parents;  // qdiscs and classes filters could hang on
  {
    tcmsg m = {};
    m.tcm_family = AF_UNSPEC;
    RtRequest req(RTM_GETQDISC, NLM_F_DUMP, &m, sizeof m);
    CRYO_TRY(inside.dump(req, [&](const nlmsghdr* h) -> Status {
      if (h->nlmsg_type != RTM_NEWQDISC) return {};
      const auto* info = payload<tcmsg>(h);
      if (TC_H_MAJ(info->tcm_handle) == 0) return {};  // the kernel's own
      auto a = attrs_of<tcmsg>(h);
      std::string name = dev_name(names, info->tcm_ifindex), kind = a.str(TCA_KIND);
      if (!saved_kind(kind)) return Error("dev " + name + ": qdisc " + kind + " is not supported");
      if (!names.by_index.count(info->tcm_ifindex)) return Error("dev " + name + ": qdisc " + kind + " on an unknown device");
      if (out->qdiscs_size() >= kMaxQdiscs) return Error("too many qdiscs");
      auto* q = out->add_qdiscs();
      q->set_dev(name);
      q->set_parent(info->tcm_parent);
      q->set_handle(info->tcm_handle);
      q->set_kind(kind);
      q->set_options(std::string(a.bytes(TCA_OPTIONS)));
      if (kind == "htb") htbs.emplace_back(info->tcm_ifindex, info->tcm_handle);
      parents.emplace_back(info->tcm_ifindex, info->tcm_handle);
      return {};
    }));
  }
  for (const auto& htb : htbs) {
    int ifindex = htb.first;  // named, not bound: clang before 16 cannot capture a structured binding
    uint32_t handle = htb.second;
    tcmsg m = {};
    m.tcm_family = AF_UNSPEC;
    m.tcm_ifindex = ifindex;
    RtRequest req(RTM_GETTCLASS, NLM_F_DUMP, &m, sizeof m);
    CRYO_TRY(inside.dump(req, [&](const nlmsghdr* h) -> Status {
      if (h->nlmsg_type != RTM_NEWTCLASS) return {};
      const auto* info = payload<tcmsg>(h);
      auto a = attrs_of<tcmsg>(h);
      if (TC_H_MAJ(info->tcm_handle) != TC_H_MAJ(handle) || a.str(TCA_KIND) != "htb") return {};
      if (out->qdiscs_size() >= kMaxQdiscs) return Error("too many htb classes");
      auto* c = out->add_qdiscs();
      c->set_dev(dev_name(names, ifindex));
      c->set_is_class(true);
      c->set_parent(info->tcm_parent);
      c->set_handle(info->tcm_handle);
      c->set_kind("htb");
      c->set_options(std::string(a.bytes(TCA_OPTIONS)));
      parents.emplace_back(ifindex, info->tcm_handle);
      return {};
    }));
  }
  for (const auto& [ifindex, parent] : parents)
    CRYO_TRY(check_filters(inside, ifindex, parent, "dev " + dev_name(names, ifindex) + " " + handle_text(parent)));
  return {};
}

Status validate_qdiscs(const image::NetNs& ns) {
  if (ns.qdiscs_size() > kMaxQdiscs) return Error(EINVAL, "too many qdiscs");
  std::set<std::string> devs;
  for (const auto& l : ns.links()) devs.insert(l.name());
  for (const auto& q : ns.qdiscs()) {
    if (!devs.count(q.dev())) return Error(EINVAL, "a qdisc on " + q.dev() + ", a device the image lacks");
    if (!saved_kind(q.kind()) || (q.is_class() && q.kind() != "htb"))
      return Error(EINVAL, "dev " + q.dev() + ": qdisc " + q.kind() + " is not one cryo makes");
    if (TC_H_MAJ(q.handle()) == 0) return Error(EINVAL, "dev " + q.dev() + ": a qdisc without a handle");
  }
  return {};
}

Status make_qdiscs(Rtnl& inside, const std::map<std::string, int>& index, const image::NetNs& ns) {
  CRYO_TRY(validate_qdiscs(ns));
  // Parents first: a qdisc at the root or under a class made already, a
  // class under its qdisc or a class made already.
  std::set<std::pair<std::string, uint32_t>> made;  // (dev, handle of a qdisc or id of a class)
  std::vector<bool> done(static_cast<size_t>(ns.qdiscs_size()));
  for (bool progress = true; progress;) {
    progress = false;
    for (int i = 0; i < ns.qdiscs_size(); i++) {
      const auto& q = ns.qdiscs(i);
      if (done[static_cast<size_t>(i)]) continue;
      bool ready = q.is_class() && q.parent() == TC_H_ROOT ? made.count({q.dev(), TC_H_MAJ(q.handle())}) > 0
                                                          : q.parent() == TC_H_ROOT || made.count({q.dev(), q.parent()}) > 0;
      if (!ready) continue;
      std::string what = "dev " + q.dev() + ": " + (q.is_class() ? "class " : "qdisc ") + q.kind() + " " +
                         handle_text(q.handle());
      auto dev = index.find(q.dev());
      if (dev == index.end()) return Error(EINVAL, what + ": no such device");
      tcmsg m = {};
      m.tcm_family = AF_UNSPEC;
      m.tcm_ifindex = dev->second;
      m.tcm_handle = q.handle();
      // A top class of an htb shows TC_H_ROOT for its parent; made, it is
      // put under its qdisc (X:0), which need not be the device's root.
      m.tcm_parent = q.is_class() && q.parent() == TC_H_ROOT ? TC_H_MAJ(q.handle()) : q.parent();
      RtRequest req(q.is_class() ? RTM_NEWTCLASS : RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, &m, sizeof m);
      req.put_str(TCA_KIND, q.kind());
      std::string options = q.options();
      if (q.kind() == "htb" && !q.is_class()) fix_htb_init(&options);
      if (!options.empty()) req.put(TCA_OPTIONS, options.data(), options.size());
      CRYO_TRY(inside.call(req).wrap(what));
      made.insert({q.dev(), q.handle()});
      done[static_cast<size_t>(i)] = true;
      progress = true;
    }
  }
  for (int i = 0; i < ns.qdiscs_size(); i++)
    if (!done[static_cast<size_t>(i)])
      return Error(EINVAL, "dev " + ns.qdiscs(i).dev() + ": " + ns.qdiscs(i).kind() + " " +
                               handle_text(ns.qdiscs(i).handle()) + " under " + handle_text(ns.qdiscs(i).parent()) +
                               ", which the image lacks");
  return {};
}

}  // namespace cryo::ns::net
