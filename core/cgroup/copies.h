// Copies of one image restored side by side, and their cgroups.
//
// CRIU restores a tree into the cgroups it was dumped in and, under its
// soft and full modes, joins them when they exist. A cgroup the image saved
// (the tree's own, below cryo's) that holds processes already is another
// copy's, restored before this one (restore --new-pidns, or the container
// restored twice): joining it would make the two copies share one memory,
// cpu and pids budget, which neither was dumped with. So under soft and full
// (the modes that make what is missing), when no --cgroup-root is given, the
// copy gets cgroups of its own instead: the root's cgroup PATH becomes
// PATH-2 (or -3, ... the first that exists in no hierarchy), with the same
// properties, the tree's cgroups below it following, as if restored with
// --cgroup-root there; the roots of the tree's cgroup namespace move with it.
// none and props join what exists (the caller made it); strict refuses it.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/cgroup/membership.h"
#include "core/image/proto/task.pb.h"
#include "core/image/proto/tree.pb.h"
#include "core/sys/result.h"

namespace cryo::cgroup {

struct CopyCgroups {
  std::vector<CgroupRoot> roots;  // as --cgroup-root would give them; empty: the image's own cgroups
  std::map<std::string, std::pair<std::string, std::string>> moves;  // by hierarchy: old path, new path
};

// root: the tree's root process. Empty when the image's cgroups are free
// (or the mode or --cgroup-root decide where the copy goes).
Result<CopyCgroups> cgroups_for_copy(const image::Tree& tree, const image::Process& root, Manage mode,
                                     const std::vector<CgroupRoot>& given);

}  // namespace cryo::cgroup
