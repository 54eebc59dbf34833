#include "core/ns/net_ns.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "core/sys/io.h"
#include "core/sys/log.h"
#include "core/sys/util.h"

namespace cryo::ns {
namespace {

// The addresses the kernel gives lo when it comes up.
bool default_lo_address(const struct sockaddr* addr, const struct sockaddr* mask) {
  if (addr->sa_family == AF_INET) {
    auto a = reinterpret_cast<const struct sockaddr_in*>(addr)->sin_addr.s_addr;
    auto m = mask ? reinterpret_cast<const struct sockaddr_in*>(mask)->sin_addr.s_addr : 0;
    return a == htonl(INADDR_LOOPBACK) && m == htonl(0xff000000);
  }
  if (addr->sa_family == AF_INET6)
    return IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<const struct sockaddr_in6*>(addr)->sin6_addr);
  return addr->sa_family == AF_PACKET;
}

std::string address_text(const struct sockaddr* addr) {
  char text[INET6_ADDRSTRLEN] = "?";
  if (addr->sa_family == AF_INET)
    ::inet_ntop(AF_INET, &reinterpret_cast<const struct sockaddr_in*>(addr)->sin_addr, text, sizeof text);
  else if (addr->sa_family == AF_INET6)
    ::inet_ntop(AF_INET6, &reinterpret_cast<const struct sockaddr_in6*>(addr)->sin6_addr, text, sizeof text);
  return text;
}

// Read in the namespace the calling thread is in.
Status read_state(image::NetNs* out) {
  struct if_nameindex* names = ::if_nameindex();
  if (!names) return errno_error("if_nameindex");
  std::string other;
  for (auto* n = names; n->if_index != 0; n++)
    if (std::strcmp(n->if_name, "lo") != 0 && other.empty()) other = n->if_name;
  ::if_freenameindex(names);
  if (!other.empty()) return Error("network device " + other + " (not supported yet: only lo is)");
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) return errno_error("socket");
  struct ifreq req = {};
  std::strcpy(req.ifr_name, "lo");
  if (::ioctl(s.get(), SIOCGIFFLAGS, &req) < 0) return errno_error("SIOCGIFFLAGS lo");
  out->set_lo_up((req.ifr_flags & IFF_UP) != 0);
  struct ifaddrs* addrs = nullptr;
  if (::getifaddrs(&addrs) < 0) return errno_error("getifaddrs");
  std::string extra;
  for (auto* a = addrs; a; a = a->ifa_next)
    if (a->ifa_addr && !default_lo_address(a->ifa_addr, a->ifa_netmask) && extra.empty())
      extra = address_text(a->ifa_addr) + " on " + a->ifa_name;
  ::freeifaddrs(addrs);
  if (!extra.empty()) return Error("address " + extra + " (not supported yet: only lo's own are)");
  return {};
}

}  // namespace

bool own_net_ns(pid_t pid) {
  auto mine = read_link("/proc/self/ns/net");
  auto theirs = read_link("/proc/" + std::to_string(pid) + "/ns/net");
  return mine.ok() && theirs.ok() && *mine != *theirs;
}

Result<NetNsScope> NetNsScope::enter(int ns_fd) {
  NetNsScope scope;
  CRYO_ASSIGN(scope.back_, open_file("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (::setns(ns_fd, CLONE_NEWNET) < 0) return errno_error("entering the tree's network namespace");
  return scope;
}

NetNsScope::~NetNsScope() {
  if (back_.valid() && ::setns(back_.get(), CLONE_NEWNET) < 0)
    log::error(std::string("cannot return to cryo's network namespace: ") + std::strerror(errno));
}

Status dump_net_ns(pid_t pid, image::NetNs* out) {
  CRYO_ASSIGN(UniqueFd ns, open_file("/proc/" + std::to_string(pid) + "/ns/net", O_RDONLY | O_CLOEXEC));
  CRYO_ASSIGN(NetNsScope inside, NetNsScope::enter(ns.get()));
  return read_state(out).wrap("the network namespace of " + pid_str(pid));
}

Result<UniqueFd> make_net_ns(const image::NetNs& ns, const std::function<Status()>& first) {
  CRYO_ASSIGN(UniqueFd back, open_file("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (::unshare(CLONE_NEWNET) < 0) return errno_error("unshare(CLONE_NEWNET)");
  auto made = open_file("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  Status up = made.ok() && first ? first() : Status();
  if (made.ok() && up.ok() && ns.lo_up()) {
    UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    struct ifreq req = {};
    std::strcpy(req.ifr_name, "lo");
    if (!s.valid() || ::ioctl(s.get(), SIOCGIFFLAGS, &req) < 0) {
      up = errno_error("SIOCGIFFLAGS lo");
    } else {
      req.ifr_flags |= IFF_UP;
      if (::ioctl(s.get(), SIOCSIFFLAGS, &req) < 0) up = errno_error("bringing lo up");
    }
  }
  if (::setns(back.get(), CLONE_NEWNET) < 0) return errno_error("returning to cryo's network namespace");
  if (!made.ok()) return std::move(made).error();
  if (!up.ok()) return std::move(up).error();
  return std::move(*made);
}

}  // namespace cryo::ns
