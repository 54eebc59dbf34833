// Which cgroups a process is in, and putting a restored one back there
// (process mode; the runtime places containers itself).
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "core/cgroup/cgroup.h"
#include "core/sys/result.h"

namespace cryo::cgroup {

// One line of /proc/PID/cgroup: the hierarchy's controllers ("" for v2,
// "cpu,cpuacct", "name=systemd") and the path in it.
struct Membership {
  std::string controllers;
  std::string path;
  bool operator==(const Membership&) const = default;
};

Result<std::vector<Membership>> parse_proc_cgroup(std::string_view text);
// A process's cgroups; fails if its threads are not all in the same ones.
Result<std::vector<Membership>> read_membership(pid_t pid, const std::vector<pid_t>& tids);

// What a restore does with the recorded cgroups (CRIU's --manage-cgroups modes;
// cryo saves no cgroup properties yet, so the modes differ only in which
// cgroups may exist beforehand).
enum class Manage {
  kSoft,      // soft, full (and a bare --manage-cgroups): join them, making those missing
  kExisting,  // none, props: join them; each must exist already
  kFresh,     // strict: make each of them; one that exists already fails the restore
  kIgnore,    // ignore: stay in the restorer's cgroups
};
// A CRIU mode name ("" is soft, the default).
Result<Manage> parse_manage(const std::string& mode);

// Moves pid into the recorded cgroups of `hierarchies`; the directories it
// creates are added to `created` (deepest last) for removal after a failure.
Status join(pid_t pid, const std::vector<Membership>& memberships, const std::vector<Hierarchy>& hierarchies,
            Manage mode, std::vector<std::string>* created);

}  // namespace cryo::cgroup
