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

enum class Manage {
  kSoft,    // join the recorded cgroups, creating those missing
  kStrict,  // join them; a missing one fails the restore
  kIgnore,  // stay in the restorer's cgroups
};
Result<Manage> parse_manage(const std::string& mode);

// Moves pid into the recorded cgroups of `hierarchies`; the directories it
// creates are added to `created` (deepest last) for removal after a failure.
Status join(pid_t pid, const std::vector<Membership>& memberships, const std::vector<Hierarchy>& hierarchies,
            Manage mode, std::vector<std::string>* created);

}  // namespace cryo::cgroup
