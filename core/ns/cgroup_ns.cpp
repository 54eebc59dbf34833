#include "core/ns/cgroup_ns.h"
#include "core/ns/namespaces.h"

#include <fcntl.h>
#include <sched.h>

#include "core/cgroup/membership.h"
#include "core/sys/io.h"
#include "core/sys/util.h"

namespace cryo::ns {

Status dump_cgroup_ns(pid_t pid, image::Tree* out) {
  std::string base = "/proc/" + std::to_string(pid);
  if (!own_namespace(pid, "cgroup")) return {};
  // /proc/PID/cgroup shows paths relative to the reader's namespace: read it
  // from cryo's and from the tree's; the difference is the tree's root.
  CRYO_ASSIGN(std::string outside, read_file(base + "/cgroup"));
  CRYO_ASSIGN(Scope in_tree, Scope::enter_of(pid, CLONE_NEWCGROUP));
  auto inside = read_file(base + "/cgroup");
  CRYO_TRY(in_tree.leave());
  if (!inside.ok()) return std::move(inside).error();
  CRYO_ASSIGN(auto host_view, cgroup::parse_proc_cgroup(outside));
  CRYO_ASSIGN(auto tree_view, cgroup::parse_proc_cgroup(*inside));
  if (host_view.size() != tree_view.size()) return Error(pid_str(pid) + ": its cgroups differ from inside its cgroup namespace");
  for (size_t i = 0; i < host_view.size(); i++) {
    const auto& h = host_view[i];
    const auto& t = tree_view[i];
    std::string name = h.controllers.empty() ? "cgroup2" : h.controllers;
    if (t.path.starts_with("/..") || !(t.path == "/" || h.path.ends_with(t.path)))
      return Error(pid_str(pid) + " is outside the root of its own cgroup namespace in the " + name +
                   " hierarchy (" + t.path + "; not supported)");
    std::string root = t.path == "/" ? h.path : h.path.substr(0, h.path.size() - t.path.size());
    auto* r = out->add_cgroup_ns();
    r->set_controllers(h.controllers);
    r->set_path(root.empty() ? "/" : root);
  }
  return {};
}

}  // namespace cryo::ns
