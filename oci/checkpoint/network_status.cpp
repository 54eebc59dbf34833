#include "oci/checkpoint/network_status.h"

#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/rtnetlink.h>
#include <sched.h>
#include <sys/socket.h>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "core/ns/namespaces.h"
#include "core/ns/net/rtnl.h"

namespace cryo::oci {
namespace {

using nlohmann::json;
using ns::net::attrs_of;
using ns::net::payload;
using ns::net::RtRequest;

struct Interface {
  std::string name, mac;
  std::vector<std::pair<int, std::string>> subnets;  // family, "address/prefix"
  std::map<int, std::string> gateway;                 // by family
};

std::string mac_text(std::string_view raw) {
  std::string out;
  char part[4];
  for (unsigned char c : raw) {
    snprintf(part, sizeof part, "%02x", c);
    out += (out.empty() ? "" : ":") + std::string(part);
  }
  return out;
}

Status read_links(ns::net::Rtnl& rtnl, std::map<int, Interface>& out) {
  ifinfomsg m = {};
  RtRequest req(RTM_GETLINK, NLM_F_DUMP, &m, sizeof m);
  return rtnl.dump(req, [&](const nlmsghdr* h) -> Status {
    if (h->nlmsg_type != RTM_NEWLINK) return {};
    const auto* info = payload<ifinfomsg>(h);
    if (info->ifi_type == ARPHRD_LOOPBACK || (info->ifi_flags & IFF_LOOPBACK)) return {};
    auto a = attrs_of<ifinfomsg>(h);
    Interface& i = out[info->ifi_index];
    i.name = a.str(IFLA_IFNAME);
    if (a.has(IFLA_ADDRESS)) i.mac = mac_text(a.bytes(IFLA_ADDRESS));
    return {};
  });
}

Status read_addrs(ns::net::Rtnl& rtnl, std::map<int, Interface>& out) {
  ifaddrmsg m = {};
  RtRequest req(RTM_GETADDR, NLM_F_DUMP, &m, sizeof m);
  return rtnl.dump(req, [&](const nlmsghdr* h) -> Status {
    if (h->nlmsg_type != RTM_NEWADDR) return {};
    const auto* info = payload<ifaddrmsg>(h);
    auto it = out.find(static_cast<int>(info->ifa_index));
    if (it == out.end() || info->ifa_scope != RT_SCOPE_UNIVERSE) return {};
    if (info->ifa_family != AF_INET && info->ifa_family != AF_INET6) return {};
    auto a = attrs_of<ifaddrmsg>(h);
    std::string_view local = a.has(IFA_LOCAL) ? a.bytes(IFA_LOCAL) : a.bytes(IFA_ADDRESS);
    std::string text = ns::net::addr_text(info->ifa_family, local);
    if (!text.empty())
      it->second.subnets.push_back({info->ifa_family, text + "/" + std::to_string(info->ifa_prefixlen)});
    return {};
  });
}

Status read_gateways(ns::net::Rtnl& rtnl, std::map<int, Interface>& out) {
  rtmsg m = {};
  RtRequest req(RTM_GETROUTE, NLM_F_DUMP, &m, sizeof m);
  return rtnl.dump(req, [&](const nlmsghdr* h) -> Status {
    if (h->nlmsg_type != RTM_NEWROUTE) return {};
    const auto* info = payload<rtmsg>(h);
    if (info->rtm_dst_len != 0 || info->rtm_table != RT_TABLE_MAIN) return {};
    auto a = attrs_of<rtmsg>(h);
    if (!a.has(RTA_GATEWAY) || !a.has(RTA_OIF)) return {};
    auto it = out.find(static_cast<int>(a.u32(RTA_OIF)));
    if (it != out.end()) it->second.gateway[info->rtm_family] = ns::net::addr_text(info->rtm_family, a.bytes(RTA_GATEWAY));
    return {};
  });
}

}  // namespace

Result<std::string> network_status_of(pid_t pid) {
  std::map<int, Interface> interfaces;
  {
    // The socket belongs to the namespace it was opened in; cryo goes back at once.
    CRYO_ASSIGN(ns::Scope inside, ns::Scope::enter_of(pid, CLONE_NEWNET));
    auto opened = ns::net::Rtnl::open();
    CRYO_TRY(inside.leave());
    if (!opened.ok()) return std::move(opened).error();
    CRYO_TRY(read_links(*opened, interfaces));
    CRYO_TRY(read_addrs(*opened, interfaces));
    CRYO_TRY(read_gateways(*opened, interfaces));
  }
  json named = json::object();
  for (const auto& [index, i] : interfaces) {
    json subnets = json::array();
    for (const auto& [family, ipnet] : i.subnets) {
      json s = {{"ipnet", ipnet}};
      if (auto g = i.gateway.find(family); g != i.gateway.end()) s["gateway"] = g->second;
      subnets.push_back(s);
    }
    json entry = {{"subnets", subnets}};
    if (!i.mac.empty()) entry["mac_address"] = i.mac;
    named[i.name] = entry;
  }
  return json{{"cryo", {{"interfaces", named}}}}.dump();
}

}  // namespace cryo::oci
