// The cgroups of a tree with their properties, as CRIU's --manage-cgroups
// keeps them: saved at dump time into tree.img, made again (parents first,
// properties before any task joins) and joined at restore time.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/cgroup/membership.h"
#include "core/image/proto/task.pb.h"
#include "core/image/proto/tree.pb.h"
#include "core/sys/result.h"

namespace cryo::cgroup {


// Every cgroup a process of `cores` is in and its ancestors, up to (not
// including) the cgroup cryo runs in, or the root when it is not below it,
// with their properties: into tree->cgroups.
Status dump_tree_cgroups(const std::map<pid_t, image::Process>& cores, const std::vector<CgroupRoot>& roots,
                         image::Tree* tree);

struct TaskCgroups {
  pid_t pid = 0;
  std::vector<Membership> memberships;
};

// Makes the saved cgroups and sets their properties as `mode` says, then
// moves each task into its cgroups (the root process's first in `tasks`).
// The directories made are added to `created`, deepest last.
Status restore_tree_cgroups(const image::Tree& tree, std::vector<TaskCgroups> tasks, Manage mode,
                            const std::vector<CgroupRoot>& roots, std::vector<std::string>* created);

// Where --cgroup-root moves the root process's cgroups, by hierarchy
// (controllers as /proc/PID/cgroup names them, "" for v2): the recorded path
// and the new one. Fails for a --cgroup-root naming a hierarchy the root is
// not in.
using CgroupMoves = std::map<std::string, std::pair<std::string, std::string>>;
Result<CgroupMoves> root_moves(const std::vector<Membership>& root, const std::vector<CgroupRoot>& roots);

// A path moved from under old_root to under new_root; nullopt when it is not below old_root. Pure.
std::optional<std::string> rebase_path(const std::string& path, const std::string& old_root, const std::string& new_root);

}  // namespace cryo::cgroup
