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
// The mounted hierarchy of a /proc/PID/cgroup line's controllers, or null.
const Hierarchy* find_hierarchy(const std::vector<Hierarchy>& hierarchies, const std::string& controllers);
// A process's cgroups; fails if its threads are not all in the same ones.
Result<std::vector<Membership>> read_membership(pid_t pid, const std::vector<pid_t>& tids);

// What a restore does with the recorded cgroups and their properties
// (CRIU's --manage-cgroups modes).
enum class Manage {
  kSoft,      // soft (and a bare --manage-cgroups): join them, making those missing;
              // properties only on the cgroups it makes
  kFull,      // full: the same, properties on every saved cgroup
  kExisting,  // none: join them; each must exist already; no properties
  kProps,     // props: the same, properties on every saved cgroup
  kFresh,     // strict: make each of them, with its properties; one that exists already fails the restore
  kIgnore,    // ignore: stay in the restorer's cgroups
};
// A CRIU mode name ("" is soft, the default).
Result<Manage> parse_manage(const std::string& mode);

// --cgroup-root [CONTROLLER:]/PATH. On dump: the cgroup whose descendants are
// saved (instead of cryo's own). On restore: where the root process's cgroup
// goes, the tree's cgroups below it following. No controller: every hierarchy
// not named by another --cgroup-root.
struct CgroupRoot {
  std::string controller;
  std::string path;
};
Result<CgroupRoot> parse_cgroup_root(std::string_view arg);

// Moves pid into the recorded cgroups of `hierarchies`; the directories it
// creates are added to `created` (deepest last) for removal after a failure.
Status join(pid_t pid, const std::vector<Membership>& memberships, const std::vector<Hierarchy>& hierarchies,
            Manage mode, std::vector<std::string>* created);

}  // namespace cryo::cgroup
