#include "core/ns/net_ns.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/nsfs.h>

#include <cstring>
#include <string>

#include "core/ns/net/net_config.h"
#include "core/sys/io.h"
#include "core/sys/log.h"
#include "core/sys/util.h"

namespace cryo::ns {
namespace {

// An fd of a network namespace (whatever path or fd named it).
Status check_net_ns(int fd, const std::string& what) {
  int type = ::ioctl(fd, NS_GET_NSTYPE);
  if (type < 0) return errno_error(what + ": not a namespace");
  if (type != CLONE_NEWNET) return Error(EINVAL, what + ": not a network namespace");
  return {};
}

Result<UniqueFd> join_net_ns(const std::string& join) {
  bool pid = !join.empty() && join.find_first_not_of("0123456789") == std::string::npos;
  std::string path = pid ? "/proc/" + join + "/ns/net" : join;
  CRYO_ASSIGN(UniqueFd fd, open_file(path, O_RDONLY | O_CLOEXEC).wrap("--join-ns net:" + join));
  CRYO_TRY(check_net_ns(fd.get(), "--join-ns net:" + join));
  return fd;
}

// A new namespace with lo alone, up if it was; first runs in it before.
Result<UniqueFd> new_net_ns(bool lo_up, const std::function<Status()>& first, int made_already) {
  CRYO_ASSIGN(UniqueFd back, open_file("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if ((made_already >= 0 ? ::setns(made_already, CLONE_NEWNET) : ::unshare(CLONE_NEWNET)) < 0)
    return errno_error(made_already >= 0 ? "entering the tree's new network namespace" : "unshare(CLONE_NEWNET)");
  auto made = open_file("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  Status up = made.ok() && first ? first() : Status();
  if (made.ok() && up.ok() && lo_up) {
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

}  // namespace

Status dump_net_ns(pid_t pid, image::NetNs* out, const NetNsDumpOptions& options) {
  std::string path = "/proc/" + std::to_string(pid) + "/ns/net";
  CRYO_ASSIGN(UniqueFd ns, open_file(path, O_RDONLY | O_CLOEXEC));
  struct stat st;
  if (::fstat(ns.get(), &st) < 0) return errno_error("stat " + path);
  if (auto it = options.externals.find(std::to_string(st.st_ino)); it != options.externals.end()) {
    out->set_external_key(it->second);  // the caller's: it gives it back on restore
    return {};
  }
  if (options.empty) {  // only lo's state: the caller sets the rest up again
    CRYO_ASSIGN(Scope inside, Scope::enter(ns.get(), CLONE_NEWNET));
    UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    struct ifreq req = {};
    std::strcpy(req.ifr_name, "lo");
    if (!s.valid() || ::ioctl(s.get(), SIOCGIFFLAGS, &req) < 0) return errno_error("SIOCGIFFLAGS lo");
    out->set_lo_up((req.ifr_flags & IFF_UP) != 0);
    out->set_empty(true);
    return {};
  }
  CRYO_ASSIGN(UniqueFd own, open_file("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  CRYO_ASSIGN(net::Rtnl outside, net::Rtnl::open());
  CRYO_ASSIGN(Scope inside, Scope::enter(ns.get(), CLONE_NEWNET));
  return net::dump_config(outside, own.get(), out).wrap("the network namespace of " + pid_str(pid));
}

// --empty-ns net: the caller sets the namespace up once the tree is in it.
bool left_to_caller(const image::NetNs& ns, const NetNsRestoreOptions& options) { return options.empty || ns.empty(); }

// In a namespace the caller sets up later, the tree's sockets are bound to
// addresses it has not yet: the kernel lets them only while this is 1 (as in
// a new namespace, it is 0 once they are made).
Status set_nonlocal_bind(const char* value) {
  for (const char* path : {"/proc/sys/net/ipv4/ip_nonlocal_bind", "/proc/sys/net/ipv6/ip_nonlocal_bind"}) {
    CRYO_ASSIGN(UniqueFd fd, open_file(path, O_WRONLY | O_CLOEXEC));
    if (::write(fd.get(), value, 1) < 0) return errno_error(std::string("writing ") + path);
  }
  return {};
}

// A namespace given by the caller, with first run in it.
Result<UniqueFd> given_net_ns(const image::NetNs& ns, const NetNsRestoreOptions& options,
                              const std::vector<files::InheritFd>& inherit_fds) {
  if (!options.join.empty()) return join_net_ns(options.join);
  for (const auto& in : inherit_fds) {
    if (in.key != ns.external_key()) continue;
    std::string what = "--inherit-fd fd[" + std::to_string(in.fd) + "]:" + in.key;
    CRYO_TRY(check_net_ns(in.fd, what));
    UniqueFd fd(::fcntl(in.fd, F_DUPFD_CLOEXEC, 3));
    if (!fd.valid()) return errno_error(what);
    return fd;
  }
  return Error(EINVAL, "the tree's network namespace was external (" + ns.external_key() +
                           "): restore with --inherit-fd fd[N]:" + ns.external_key() + " or --join-ns net:PATH");
}

Result<UniqueFd> make_net_ns(const image::NetNs& ns, const NetNsRestoreOptions& options,
                             const std::vector<files::InheritFd>& inherit_fds, const std::function<Status()>& first) {
  if (!options.join.empty() || !ns.external_key().empty()) {
    CRYO_ASSIGN(UniqueFd given, given_net_ns(ns, options, inherit_fds));
    if (first) {
      CRYO_ASSIGN(Scope inside, Scope::enter(given.get(), CLONE_NEWNET));
      CRYO_TRY(first());
    }
    return given;
  }
  CRYO_ASSIGN(UniqueFd made, new_net_ns(ns.lo_up(), first, options.made));
  if (left_to_caller(ns, options)) {
    CRYO_ASSIGN(Scope inside, Scope::enter(made.get(), CLONE_NEWNET));
    CRYO_TRY(set_nonlocal_bind("1"));
    return made;
  }
  if (ns.links_size() == 0) return made;  // an older image: lo alone
  CRYO_ASSIGN(UniqueFd own, open_file("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  CRYO_TRY(net::restore_config(ns, made.get(), own.get(), options).wrap("the tree's network namespace"));
  return made;
}

Status net_ns_sockets_made(const image::NetNs& ns, const NetNsRestoreOptions& options) {
  if (!ns.external_key().empty() || !options.join.empty() || !left_to_caller(ns, options)) return {};
  return set_nonlocal_bind("0");
}

std::vector<files::InheritFd> without_net_ns_key(const image::Tree& tree, const std::vector<files::InheritFd>& inherit_fds) {
  std::vector<files::InheritFd> out;
  for (const auto& in : inherit_fds)
    if (!tree.has_net_ns() || tree.net_ns().external_key().empty() || in.key != tree.net_ns().external_key())
      out.push_back(in);
  return out;
}

}  // namespace cryo::ns
