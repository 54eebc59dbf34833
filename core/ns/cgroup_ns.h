// The tree's cgroup namespace: its root in each hierarchy. The restore makes
// a new one rooted at the same cgroups: cryo's restorer steps into them
// while it forks the tree's root, which unshares the namespace there before
// forking the rest; every process then joins its own cgroups below.
#pragma once

#include <sys/types.h>

#include <vector>

#include "core/image/proto/tree.pb.h"
#include "core/sys/result.h"

namespace cryo::ns {

// The roots of pid's cgroup namespace into out->cgroup_ns, if it is not cryo's.
Status dump_cgroup_ns(pid_t pid, image::Tree* out);

}  // namespace cryo::ns
