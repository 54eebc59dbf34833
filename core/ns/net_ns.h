// The tree's network namespace, as far as cryo takes it yet: one with no
// device but its loopback (`unshare --net`, a container run without a
// network), whose state is whether lo is up, with the tree's sockets in it.
// The restore makes a new one; cryo makes the tree's sockets inside it and
// the tree's root joins it before forking the rest. Devices, addresses other
// than lo's own, routes, rules and sysctls are refused by the dump, naming
// them. TCP connections inside are locked inside (core/net/netlock.h).
#pragma once

#include <sys/types.h>

#include <functional>

#include "core/image/proto/tree.pb.h"
#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::ns {

// Whether pid is in another network namespace than cryo.
bool own_net_ns(pid_t pid);

// The state of pid's network namespace; refuses what it cannot make again.
Status dump_net_ns(pid_t pid, image::NetNs* out);

// The calling thread in another network namespace until destroyed (back in
// the one it was in). Sockets made meanwhile are the namespace's.
class NetNsScope {
 public:
  static Result<NetNsScope> enter(int ns_fd);
  NetNsScope(NetNsScope&&) noexcept = default;
  ~NetNsScope();

 private:
  NetNsScope() = default;
  UniqueFd back_;
};

// A new network namespace as the image says, held by the returned fd.
// first, if given, runs in it before any device comes up (the network lock).
Result<UniqueFd> make_net_ns(const image::NetNs& ns, const std::function<Status()>& first = {});

}  // namespace cryo::ns
