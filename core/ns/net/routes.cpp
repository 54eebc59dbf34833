// The namespace's routes (every table, IPv4 and IPv6) and rules.
#include <linux/fib_rules.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "core/ns/net/net_config.h"

namespace cryo::ns::net {
namespace {

constexpr int kMaxRoutes = 1 << 20;
constexpr int kMaxRules = 65536;

std::string route_text(const image::NetRoute& r) {
  std::string dst = r.dst().empty() ? "default" : r.dst() + "/" + std::to_string(r.dst_len());
  return "route " + dst + (r.dev().empty() ? "" : " dev " + r.dev()) + " table " + std::to_string(r.table());
}

// Routes the kernel makes by itself (for addresses, links, lo) or that come
// and go (router advertisements, redirects, cached ones).
bool made_by_kernel(const rtmsg* m) {
  return m->rtm_protocol == RTPROT_KERNEL || m->rtm_protocol == RTPROT_RA || m->rtm_protocol == RTPROT_REDIRECT ||
         (m->rtm_flags & RTM_F_CLONED);
}

// Every rule attribute the kernel reports and takes back, but the priority
// (kept apart) and padding.
bool kept_rule_attr(uint16_t type) { return type > FRA_UNSPEC && type <= 40 && type != FRA_PAD && type != FRA_PRIORITY; }

}  // namespace

Status dump_routes(Rtnl& inside, const LinkNames& names, image::NetNs* out) {
  rtmsg m = {};
  RtRequest req(RTM_GETROUTE, NLM_F_DUMP, &m, sizeof m);
  return inside.dump(req, [&](const nlmsghdr* h) -> Status {
    if (h->nlmsg_type != RTM_NEWROUTE) return {};
    const auto* info = payload<rtmsg>(h);
    if ((info->rtm_family != AF_INET && info->rtm_family != AF_INET6) || made_by_kernel(info)) return {};
    auto a = attrs_of<rtmsg>(h);
    image::NetRoute r;
    int family = info->rtm_family;
    r.set_family(static_cast<uint32_t>(family));
    r.set_table(a.u32(RTA_TABLE, info->rtm_table));
    r.set_protocol(info->rtm_protocol);
    r.set_scope(info->rtm_scope);
    r.set_type(info->rtm_type);
    r.set_flags(info->rtm_flags & RTNH_F_ONLINK);
    r.set_tos(info->rtm_tos);
    r.set_dst(addr_text(family, a.bytes(RTA_DST)));
    r.set_dst_len(info->rtm_dst_len);
    r.set_src(addr_text(family, a.bytes(RTA_SRC)));
    r.set_src_len(info->rtm_src_len);
    r.set_gateway(addr_text(family, a.bytes(RTA_GATEWAY)));
    r.set_prefsrc(addr_text(family, a.bytes(RTA_PREFSRC)));
    if (a.has(RTA_OIF)) {
      auto dev = names.by_index.find(static_cast<int>(a.u32(RTA_OIF)));
      if (dev == names.by_index.end()) return Error(route_text(r) + ": its device is not in the namespace");
      r.set_dev(dev->second);
    }
    r.set_metric(a.u32(RTA_PRIORITY));
    if (a.has(RTA_PREF)) r.set_pref(static_cast<uint8_t>(a.bytes(RTA_PREF)[0]));
    for (uint16_t unsupported : {RTA_MULTIPATH, RTA_ENCAP, RTA_VIA, RTA_NH_ID})
      if (a.has(unsupported))
        return Error(route_text(r) + ": multipath, encapsulated, via and nexthop routes are not supported");
    if (a.has(RTA_METRICS)) {
      auto nested = a.bytes(RTA_METRICS);
      Status bad;
      RtAttrs(nested.data(), nested.size()).each([&](uint16_t type, std::string_view value) {
        if (type == RTAX_CC_ALGO || value.size() != 4) {
          bad = Error(route_text(r) + ": a congestion control of its own is not supported");
          return;
        }
        uint32_t v;
        std::memcpy(&v, value.data(), 4);
        (*r.mutable_metrics())[type] = v;
      });
      CRYO_TRY(std::move(bad));
    }
    if (out->routes_size() >= kMaxRoutes) return Error("too many routes");
    *out->add_routes() = std::move(r);
    return {};
  });
}

Status make_routes(Rtnl& inside, const std::map<std::string, int>& index, const image::NetNs& ns) {
  if (ns.routes_size() > kMaxRoutes) return Error(EINVAL, "too many routes");
  // Host and link routes first: a gateway must be reachable when its route is made.
  std::vector<const image::NetRoute*> order;
  for (const auto& r : ns.routes()) order.push_back(&r);
  std::stable_sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->scope() > b->scope(); });
  for (const auto* r : order) {
    std::string what = route_text(*r);
    int family = static_cast<int>(r->family());
    if (family != AF_INET && family != AF_INET6) return Error(EINVAL, what + ": bad family");
    unsigned width = family == AF_INET ? 32 : 128;
    std::string dst, src, gateway, prefsrc;
    auto parse = [&](const std::string& text, std::string* raw) { return text.empty() || addr_bytes(family, text, raw); };
    if (!parse(r->dst(), &dst) || !parse(r->src(), &src) || !parse(r->gateway(), &gateway) ||
        !parse(r->prefsrc(), &prefsrc) || r->dst_len() > width || r->src_len() > width || r->scope() > 255 ||
        r->type() > 255 || r->protocol() > 255 || r->tos() > 255 || r->pref() > 255)
      return Error(EINVAL, what + ": bad in the image");
    rtmsg m = {};
    m.rtm_family = static_cast<uint8_t>(family);
    m.rtm_dst_len = static_cast<uint8_t>(r->dst_len());
    m.rtm_src_len = static_cast<uint8_t>(r->src_len());
    m.rtm_tos = static_cast<uint8_t>(r->tos());
    m.rtm_table = static_cast<uint8_t>(r->table() < 256 ? r->table() : static_cast<uint32_t>(RT_TABLE_UNSPEC));
    m.rtm_protocol = static_cast<uint8_t>(r->protocol());
    m.rtm_scope = static_cast<uint8_t>(r->scope());
    m.rtm_type = static_cast<uint8_t>(r->type());
    m.rtm_flags = r->flags() & RTNH_F_ONLINK;
    RtRequest req(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &m, sizeof m);
    req.put_u32(RTA_TABLE, r->table());
    if (!dst.empty()) req.put(RTA_DST, dst.data(), dst.size());
    if (!src.empty()) req.put(RTA_SRC, src.data(), src.size());
    if (!gateway.empty()) req.put(RTA_GATEWAY, gateway.data(), gateway.size());
    if (!prefsrc.empty()) req.put(RTA_PREFSRC, prefsrc.data(), prefsrc.size());
    if (!r->dev().empty()) {
      auto dev = index.find(r->dev());
      if (dev == index.end()) return Error(EINVAL, what + ": no such device in the image");
      req.put_u32(RTA_OIF, static_cast<uint32_t>(dev->second));
    }
    if (r->metric()) req.put_u32(RTA_PRIORITY, r->metric());
    if (r->pref()) {
      uint8_t pref = static_cast<uint8_t>(r->pref());
      req.put(RTA_PREF, &pref, 1);
    }
    if (!r->metrics().empty()) {
      size_t nest = req.begin(RTA_METRICS);
      for (const auto& [type, value] : r->metrics()) {
        if (type == 0 || type > RTAX_MAX || type == RTAX_CC_ALGO) return Error(EINVAL, what + ": bad metric");
        req.put_u32(static_cast<uint16_t>(type), value);
      }
      req.end(nest);
    }
    auto made = inside.call(req);
    if (!made.ok() && made.error().code() == EEXIST) continue;  // one the kernel made for an address
    CRYO_TRY(std::move(made).wrap(what));
  }
  return {};
}

Status dump_rules(Rtnl& inside, image::NetNs* out) {
  fib_rule_hdr m = {};
  RtRequest req(RTM_GETRULE, NLM_F_DUMP, &m, sizeof m);
  return inside.dump(req, [&](const nlmsghdr* h) -> Status {
    if (h->nlmsg_type != RTM_NEWRULE) return {};
    const auto* info = payload<fib_rule_hdr>(h);
    auto a = attrs_of<fib_rule_hdr>(h);
    // The rules a namespace starts with (local, main, default) are the kernel's.
    if (a.has(FRA_PROTOCOL) && static_cast<uint8_t>(a.bytes(FRA_PROTOCOL)[0]) == RTPROT_KERNEL) return {};
    image::NetRule r;
    r.set_family(info->family);
    r.set_dst_len(info->dst_len);
    r.set_src_len(info->src_len);
    r.set_tos(info->tos);
    r.set_table(info->table);
    r.set_action(info->action);
    r.set_flags(info->flags);
    r.set_priority(a.u32(FRA_PRIORITY));
    a.each([&](uint16_t type, std::string_view value) {
      if (kept_rule_attr(type)) (*r.mutable_attrs())[type] = std::string(value);
    });
    if (out->rules_size() >= kMaxRules) return Error("too many rules");
    *out->add_rules() = std::move(r);
    return {};
  });
}

Status validate_rules(const image::NetNs& ns) {
  if (ns.rules_size() > kMaxRules) return Error(EINVAL, "too many rules");
  for (const auto& r : ns.rules()) {
    if ((r.family() != AF_INET && r.family() != AF_INET6) || r.dst_len() > 128 || r.src_len() > 128 || r.tos() > 255 ||
        r.table() > 255 || r.action() > 255)
      return Error(EINVAL, "rule " + std::to_string(r.priority()) + ": bad in the image");
    for (const auto& [type, value] : r.attrs())
      if (type > 0xffff || !kept_rule_attr(static_cast<uint16_t>(type)) || value.size() > 64)
        return Error(EINVAL, "rule " + std::to_string(r.priority()) + ": bad attribute " + std::to_string(type));
  }
  return {};
}

Status make_rules(Rtnl& inside, const image::NetNs& ns) {
  for (const auto& r : ns.rules()) {
    fib_rule_hdr m = {};
    m.family = static_cast<uint8_t>(r.family());
    m.dst_len = static_cast<uint8_t>(r.dst_len());
    m.src_len = static_cast<uint8_t>(r.src_len());
    m.tos = static_cast<uint8_t>(r.tos());
    m.table = static_cast<uint8_t>(r.table());
    m.action = static_cast<uint8_t>(r.action());
    m.flags = r.flags();
    RtRequest req(RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, &m, sizeof m);
    req.put_u32(FRA_PRIORITY, r.priority());
    for (const auto& [type, value] : r.attrs()) req.put(static_cast<uint16_t>(type), value.data(), value.size());
    CRYO_TRY(inside.call(req).wrap("rule " + std::to_string(r.priority())));
  }
  return {};
}

}  // namespace cryo::ns::net
