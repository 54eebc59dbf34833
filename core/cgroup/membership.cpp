#include "core/cgroup/membership.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "core/sys/io.h"

namespace cryo::cgroup {
namespace {

std::vector<std::string> sorted_controllers(std::string_view list) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= list.size() && !list.empty()) {
    size_t comma = list.find(',', pos);
    if (comma == std::string_view::npos) comma = list.size();
    if (comma > pos) out.emplace_back(list.substr(pos, comma - pos));
    pos = comma + 1;
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

const Hierarchy* find_hierarchy(const std::vector<Hierarchy>& hierarchies, const std::string& controllers) {
  auto want = sorted_controllers(controllers);
  for (const auto& h : hierarchies) {
    if (controllers.empty() || h.v2) {
      if (controllers.empty() && h.v2) return &h;
      continue;
    }
    auto have = h.controllers;
    std::sort(have.begin(), have.end());
    if (have == want) return &h;
  }
  return nullptr;
}

Result<std::vector<Membership>> parse_proc_cgroup(std::string_view text) {
  std::vector<Membership> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.empty()) continue;
    size_t first = line.find(':'), second = first == std::string_view::npos ? first : line.find(':', first + 1);
    if (second == std::string_view::npos || line.substr(second + 1).empty() || line[second + 1] != '/')
      return Error(EINVAL, "bad /proc/PID/cgroup line '" + std::string(line) + "'");
    out.push_back({std::string(line.substr(first + 1, second - first - 1)), std::string(line.substr(second + 1))});
  }
  return out;
}

Result<std::vector<Membership>> read_membership(pid_t pid, const std::vector<pid_t>& tids) {
  std::string proc = "/proc/" + std::to_string(pid);
  CRYO_ASSIGN(std::string text, read_file(proc + "/cgroup"));
  CRYO_ASSIGN(auto memberships, parse_proc_cgroup(text));
  for (pid_t tid : tids) {
    if (tid == pid) continue;
    CRYO_ASSIGN(std::string theirs, read_file(proc + "/task/" + std::to_string(tid) + "/cgroup"));
    if (theirs != text)
      return Error("pid " + std::to_string(pid) + ": thread " + std::to_string(tid) +
                   " is in other cgroups than its process (not supported)");
  }
  return memberships;
}

Result<Manage> parse_manage(const std::string& mode) {
  if (mode.empty() || mode == "soft") return Manage::kSoft;
  if (mode == "full") return Manage::kFull;
  if (mode == "none") return Manage::kExisting;
  if (mode == "props") return Manage::kProps;
  if (mode == "strict") return Manage::kFresh;
  if (mode == "ignore") return Manage::kIgnore;
  return Error(EINVAL, "--manage-cgroups " + mode + " is not a mode (soft, full, none, props, strict or ignore)");
}

Result<CgroupRoot> parse_cgroup_root(std::string_view arg) {
  CgroupRoot r;
  size_t colon = arg.find(':');
  if (colon != std::string_view::npos) {
    r.controller = std::string(arg.substr(0, colon));
    arg.remove_prefix(colon + 1);
    if (r.controller.empty()) return Error(EINVAL, "--cgroup-root :PATH names no controller");
  }
  r.path = std::string(arg);
  while (r.path.size() > 1 && r.path.back() == '/') r.path.pop_back();
  if (r.path.empty() || r.path[0] != '/' || r.path.find("/..") != std::string::npos ||
      r.path.find("/./") != std::string::npos || r.path.find("//") != std::string::npos || r.path.ends_with("/."))
    return Error(EINVAL, "--cgroup-root " + std::string(arg) + ": the path is not a plain absolute path");
  return r;
}

Status join(pid_t pid, const std::vector<Membership>& memberships, const std::vector<Hierarchy>& hierarchies,
            Manage mode, std::vector<std::string>* created) {
  if (mode == Manage::kIgnore) return {};
  // Moving a task takes a lock whose writer waits for an RCU grace period
  // (~10 ms): skip the cgroups it is in already (those of its restorer).
  auto now = read_file("/proc/" + std::to_string(pid) + "/cgroup");
  std::vector<Membership> current;
  if (now.ok())
    if (auto parsed = parse_proc_cgroup(*now); parsed.ok()) current = std::move(*parsed);
  for (const auto& m : memberships) {
    std::string name = m.controllers.empty() ? "cgroup2" : m.controllers;
    if (m.path.empty() || m.path[0] != '/' || m.path.find("/..") != std::string::npos ||
        m.path.find("/./") != std::string::npos)
      return Error(EINVAL, "the " + name + " cgroup path " + m.path + " is not a plain absolute path");
    const Hierarchy* h = find_hierarchy(hierarchies, m.controllers);
    if (!h)
      return Error(ENOENT, "the " + name + " cgroup hierarchy is not mounted here (--manage-cgroups=ignore "
                                           "restores into cryo's own cgroups)");
    if (mode == Manage::kFresh && m.path != "/") {
      // Every cgroup of the tree below a hierarchy's root is made by this restore:
      // one it did not make must be absent.
      std::string leaf = h->mount_point + m.path;
      bool ours = std::find(created->begin(), created->end(), leaf) != created->end();
      struct stat st;
      if (!ours && ::stat(leaf.c_str(), &st) == 0)
        return Error(EEXIST, "the " + name + " cgroup " + m.path + " exists already (" + leaf +
                                 "; --manage-cgroups=strict makes every cgroup of the tree below a root itself)");
    }
    if (std::find(current.begin(), current.end(), m) != current.end()) continue;
    std::string dir = h->mount_point + (m.path == "/" ? "" : m.path);
    if (mode == Manage::kExisting && ::access(dir.c_str(), F_OK) < 0)
      return Error(ENOENT, "the " + name + " cgroup " + m.path + " does not exist here (" + dir +
                               " is missing; --manage-cgroups=none and props join existing cgroups only)");
    CRYO_TRY(make_path(*h, m.path, created));
    CRYO_ASSIGN(UniqueFd procs, open_file(dir + "/cgroup.procs", O_WRONLY | O_CLOEXEC));
    CRYO_TRY(write_all(procs.get(), std::to_string(pid)).wrap("moving pid " + std::to_string(pid) + " into " + dir));
  }
  return {};
}

}  // namespace cryo::cgroup
