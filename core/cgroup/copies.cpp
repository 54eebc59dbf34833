#include "core/cgroup/copies.h"

#include <sys/stat.h>

#include <set>

#include "core/cgroup/cgroup.h"
#include "core/sys/io.h"
#include "core/sys/log.h"

namespace cryo::cgroup {
namespace {

bool holds_processes(const std::string& dir) {
  auto procs = read_file(dir + "/cgroup.procs");
  return procs.ok() && procs->find_first_not_of(" \n") != std::string::npos;
}

bool exists(const std::string& dir) {
  struct stat st;
  return ::stat(dir.c_str(), &st) == 0;
}

}  // namespace

Result<CopyCgroups> cgroups_for_copy(const image::Tree& tree, const image::Process& root, Manage mode,
                                     const std::vector<CgroupRoot>& given) {
  CopyCgroups out;
  if (!given.empty() || (mode != Manage::kSoft && mode != Manage::kFull)) return out;
  std::set<std::pair<std::string, std::string>> saved;
  for (const auto& d : tree.cgroups()) saved.insert({d.controllers(), d.path()});
  CRYO_ASSIGN(auto mounted, host_hierarchies());
  struct Own {
    const Hierarchy* h;
    std::string controllers, path;
  };
  std::vector<Own> own;  // the root's cgroups the image saved, where they are mounted
  bool taken = false;
  for (const auto& c : root.cgroups()) {
    if (c.path() == "/" || !saved.count({c.controllers(), c.path()})) continue;
    const Hierarchy* h = find_hierarchy(mounted, c.controllers());
    if (!h) continue;
    own.push_back({h, c.controllers(), c.path()});
    taken = taken || holds_processes(h->mount_point + c.path());
  }
  if (!taken) return out;
  for (int n = 2; n < 1000; n++) {
    std::string suffix = "-" + std::to_string(n);
    bool free = true;
    for (const auto& o : own) free = free && !exists(o.h->mount_point + o.path + suffix);
    if (!free) continue;
    for (const auto& o : own) {
      std::string controller = o.h->v2 ? "cgroup2" : o.h->controllers.front();
      out.roots.push_back({controller, o.path + suffix});
      out.moves[o.controllers] = {o.path, o.path + suffix};
      log::info("the " + (o.h->v2 ? std::string("cgroup2") : controller) + " cgroup " + o.path +
                " holds another copy's processes: this copy goes to " + o.path + suffix);
    }
    return out;
  }
  return Error(EEXIST, "the tree's cgroup " + own.front().path + " holds processes and so do its copies' (-2 to -999): "
                       "restore with --cgroup-root");
}

}  // namespace cryo::cgroup
