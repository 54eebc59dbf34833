#include "core/cgroup/tree_cgroups.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <set>
#include <tuple>

#include "core/cgroup/props.h"
#include "core/sys/fd.h"
#include "core/sys/io.h"
#include "core/sys/log.h"
#include "core/sys/util.h"

namespace cryo::cgroup {
namespace {

bool plain_path(const std::string& path) {
  return !path.empty() && path[0] == '/' && path.find("/..") == std::string::npos &&
         path.find("/./") == std::string::npos && path.find("//") == std::string::npos &&
         (path == "/" || path.back() != '/') && !path.ends_with("/.");
}

std::string parent_of(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

size_t depth(const std::string& path) { return std::count(path.begin(), path.end(), '/'); }

std::string hierarchy_name(const std::string& controllers) { return controllers.empty() ? "cgroup2" : controllers; }

std::vector<std::string> split_commas(const std::string& list) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= list.size() && !list.empty()) {
    size_t comma = list.find(',', pos);
    if (comma == std::string::npos) comma = list.size();
    if (comma > pos) out.push_back(list.substr(pos, comma - pos));
    pos = comma + 1;
  }
  return out;
}

// The --cgroup-root that applies to a hierarchy of the image, or null.
// `v1_controllers`: every controller of the image's v1 hierarchies; a
// controller none of them has names the v2 hierarchy.
const CgroupRoot* root_for(const std::vector<CgroupRoot>& roots, const std::string& controllers,
                           const std::set<std::string>& v1_controllers) {
  const CgroupRoot* generic = nullptr;
  for (const auto& r : roots) {
    if (r.controller.empty()) {
      generic = &r;
      continue;
    }
    if (controllers.empty()) {
      if (r.controller == "unified" || r.controller == "cgroup2" || !v1_controllers.count(r.controller)) return &r;
    } else {
      auto list = split_commas(controllers);
      if (std::find(list.begin(), list.end(), r.controller) != list.end()) return &r;
    }
  }
  return generic;
}

std::set<std::string> v1_controllers_of(const std::set<std::string>& hierarchies) {
  std::set<std::string> out;
  for (const auto& h : hierarchies)
    for (auto& c : split_commas(h)) out.insert(c);
  return out;
}

// A v2 cgroup with device programs attached keeps them only if it is not
// made again: cryo cannot save a BPF program.
void warn_device_programs(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return;
  union bpf_attr attr = {};
  attr.query.target_fd = static_cast<uint32_t>(fd.get());
  attr.query.attach_type = BPF_CGROUP_DEVICE;
  if (::syscall(SYS_bpf, BPF_PROG_QUERY, &attr, sizeof attr) == 0 && attr.query.prog_cnt > 0)
    log::warn("cgroup " + dir + ": its device access program (BPF) is not saved; a restore that makes the "
              "cgroup again makes it without one");
}

// A v2 cgroup's files appear only for the controllers its parent enables
// for its children: enable those its properties need.
Status enable_in_parent(const std::string& dir, const std::vector<Prop>& props) {
  auto needed = controllers_needed(props);
  if (needed.empty()) return {};
  std::string control = dir.substr(0, dir.rfind('/')) + "/cgroup.subtree_control";
  CRYO_ASSIGN(std::string current, read_file(control));
  std::string words = " " + current;
  std::replace(words.begin(), words.end(), '\n', ' ');
  for (const auto& c : needed) {
    if (words.find(" " + c + " ") != std::string::npos) continue;
    CRYO_ASSIGN(UniqueFd fd, open_file(control, O_WRONLY | O_CLOEXEC));
    CRYO_TRY(write_all(fd.get(), "+" + c).wrap("writing '+" + c + "' to " + control));
  }
  return {};
}

Error strict_refusal(const Hierarchy& h, const std::string& path) {
  std::string name = h.v2 ? "cgroup2" : h.controllers.empty() ? h.mount_point : h.controllers[0];
  return Error(EEXIST, "the " + name + " cgroup " + path + " exists already (" + h.mount_point + path +
                           "; --manage-cgroups=strict makes every cgroup of the tree below a root itself)");
}

struct Owner {
  std::optional<uint32_t> uid, gid, mode;
  std::vector<std::string> files;
};

// A delegated cgroup's owner: the files of it the owner had (besides the
// directory) are named in the image. Read at dump time.
Status save_owner(const std::string& dir, image::CgroupDir* out) {
  struct stat st;
  if (::stat(dir.c_str(), &st) < 0) return errno_error("stat " + dir);
  out->set_uid(st.st_uid);
  out->set_gid(st.st_gid);
  out->set_mode(st.st_mode & 07777);
  if (st.st_uid == 0 && st.st_gid == 0) return {};
  DIR* d = ::opendir(dir.c_str());
  if (!d) return errno_error("opendir " + dir);
  while (auto* e = ::readdir(d)) {
    struct stat file;
    if (e->d_name[0] == '.' || ::fstatat(::dirfd(d), e->d_name, &file, AT_SYMLINK_NOFOLLOW) < 0) continue;
    if (S_ISREG(file.st_mode) && file.st_uid == st.st_uid && file.st_gid == st.st_gid) out->add_owned_files(e->d_name);
  }
  ::closedir(d);
  return {};
}

// Gives a cgroup its saved owner and permission bits again.
Status restore_owner(const std::string& dir, const Owner& owner) {
  if (owner.mode && ::chmod(dir.c_str(), *owner.mode) < 0) return errno_error("chmod " + dir);
  if (!owner.uid || !owner.gid) return {};
  if (::chown(dir.c_str(), *owner.uid, *owner.gid) < 0) return errno_error("chown " + dir);
  for (const auto& name : owner.files) {
    std::string path = dir + "/" + name;
    if (::chown(path.c_str(), *owner.uid, *owner.gid) < 0) {
      if (errno != ENOENT) return errno_error("chown " + path);
      log::warn("cgroup " + dir + ": " + name + " is not there to be given back to uid " + std::to_string(*owner.uid));
    }
  }
  return {};
}

Status restore_dir(const Hierarchy& h, const std::string& path, const std::vector<Prop>& props, const Owner& owner,
                   Manage mode, std::vector<std::string>* created) {
  std::string dir = h.mount_point + path;
  struct stat st;
  bool exists = ::stat(dir.c_str(), &st) == 0;
  bool ours = std::find(created->begin(), created->end(), dir) != created->end();
  switch (mode) {
    case Manage::kIgnore:
    case Manage::kExisting:
      return {};  // joining checks that they exist
    case Manage::kProps:
      if (!exists) return {};
      break;
    case Manage::kSoft:
      if (exists && !ours) return {};  // its properties are whoever made it's
      break;
    case Manage::kFull:
      break;
    case Manage::kFresh:
      if (exists && !ours) return strict_refusal(h, path);
      break;
  }
  if (!exists) CRYO_TRY(make_path(h, path, created));
  CRYO_TRY(restore_owner(dir, owner));
  if (props.empty()) return {};
  if (h.v2) CRYO_TRY(enable_in_parent(dir, props));
  return write_props(h.v2, dir, props);
}

}  // namespace

Result<CgroupMoves> root_moves(const std::vector<Membership>& root, const std::vector<CgroupRoot>& roots) {
  std::set<std::string> hierarchies;
  for (const auto& m : root)
    if (!m.controllers.empty()) hierarchies.insert(m.controllers);
  auto v1 = v1_controllers_of(hierarchies);
  std::set<const CgroupRoot*> used;
  CgroupMoves moves;
  for (const auto& m : root)
    if (const CgroupRoot* r = root_for(roots, m.controllers, v1)) {
      moves[m.controllers] = {m.path, r->path};
      used.insert(r);
    }
  for (const auto& r : roots)
    if (!used.count(&r) && !r.controller.empty())
      return Error(EINVAL, "--cgroup-root " + r.controller + ":" + r.path + ": the image has no such cgroup hierarchy");
  return moves;
}

std::optional<std::string> rebase_path(const std::string& path, const std::string& old_root,
                                       const std::string& new_root) {
  std::string rest;
  if (old_root == "/") rest = path == "/" ? "" : path;
  else if (path == old_root) rest = "";
  else if (path.starts_with(old_root + "/")) rest = path.substr(old_root.size());
  else return std::nullopt;
  if (new_root == "/") return rest.empty() ? "/" : rest;
  return new_root + rest;
}

Status dump_tree_cgroups(const std::map<pid_t, image::Process>& cores, const std::vector<CgroupRoot>& roots,
                         image::Tree* tree) {
  CRYO_ASSIGN(std::string self_text, read_file("/proc/self/cgroup"));
  CRYO_ASSIGN(auto self, parse_proc_cgroup(self_text));
  std::set<std::string> hierarchies;
  for (const auto& [pid, core] : cores)
    for (const auto& c : core.cgroups())
      if (!c.controllers().empty()) hierarchies.insert(c.controllers());
  auto v1 = v1_controllers_of(hierarchies);
  // (hierarchy, depth, path): parents first.
  std::set<std::tuple<std::string, size_t, std::string>> wanted;
  for (const auto& [pid, core] : cores)
    for (const auto& c : core.cgroups()) {
      if (!plain_path(c.path())) continue;  // outside cryo's view: the restore refuses it
      std::string base = "/";
      if (const CgroupRoot* r = root_for(roots, c.controllers(), v1)) base = r->path;
      else
        for (const auto& m : self)
          if (m.controllers == c.controllers()) base = m.path;
      if (c.path() == base) continue;
      std::string stop = base != "/" && c.path().starts_with(base + "/") ? base : "/";
      for (std::string p = c.path(); p != stop && p != "/"; p = parent_of(p)) wanted.insert({c.controllers(), depth(p), p});
    }
  if (wanted.empty()) return {};
  uint64_t start = now_us();
  CRYO_ASSIGN(auto mounted, host_hierarchies());
  for (const auto& [controllers, d, path] : wanted) {
    const Hierarchy* h = find_hierarchy(mounted, controllers);
    if (!h) {
      // Membership alone is kept: a restore joins it where it is mounted.
      log::warn("the " + hierarchy_name(controllers) + " cgroup hierarchy is not mounted here: the properties of "
                "cgroup " + path + " in it are not saved");
      continue;
    }
    std::string dir = h->mount_point + path;
    CRYO_ASSIGN(auto props, read_props(h->v2, dir).wrap("the properties of cgroup " + path));
    if (h->v2) warn_device_programs(dir);
    auto* out = tree->add_cgroups();
    out->set_controllers(controllers);
    out->set_path(path);
    CRYO_TRY(save_owner(dir, out).wrap("cgroup " + path));
    for (const auto& p : props) {
      auto* prop = out->add_props();
      prop->set_name(p.name);
      prop->set_value(p.value);
    }
  }
  log::debug("saved " + std::to_string(tree->cgroups_size()) + " cgroups with their properties in " +
             std::to_string(now_us() - start) + " us");
  return {};
}

Status restore_tree_cgroups(const image::Tree& tree, std::vector<TaskCgroups> tasks, Manage mode,
                            const std::vector<CgroupRoot>& roots, std::vector<std::string>* created) {
  if (mode == Manage::kIgnore) return {};
  struct Dir {
    std::string controllers, path;
    std::vector<Prop> props;
    Owner owner;
  };
  std::vector<Dir> dirs;
  for (const auto& d : tree.cgroups()) {
    Dir dir{d.controllers(), d.path(), {}, {}};
    if (d.has_uid()) dir.owner.uid = d.uid();
    if (d.has_gid()) dir.owner.gid = d.gid();
    if (d.has_mode()) dir.owner.mode = d.mode() & 07777;
    for (const auto& name : d.owned_files()) {
      if (name.empty() || name.find('/') != std::string::npos || name[0] == '.')
        return Error(EINVAL, "tree.img: cgroup " + dir.path + ": '" + name + "' is not a file name");
      dir.owner.files.push_back(name);
    }
    if (!plain_path(dir.path) || dir.path == "/")
      return Error(EINVAL, "tree.img: the " + hierarchy_name(dir.controllers) + " cgroup path " + dir.path +
                               " is not a plain absolute path below the root");
    for (const auto& p : d.props()) {
      if (!prop_rank(dir.controllers.empty(), p.name()))
        return Error(EINVAL, "tree.img: cgroup " + dir.path + ": " + p.name() + " is not a file cryo restores");
      dir.props.push_back({p.name(), p.value()});
    }
    dirs.push_back(std::move(dir));
  }
  if (!roots.empty()) {
    // --cgroup-root: the root process's cgroup in a hierarchy becomes the
    // given one; the tree's cgroups below it follow, those above are left out.
    if (tasks.empty()) return {};
    CRYO_ASSIGN(CgroupMoves moves, root_moves(tasks.front().memberships, roots));
    for (auto& t : tasks)
      for (auto& m : t.memberships) {
        auto it = moves.find(m.controllers);
        if (it == moves.end()) continue;
        auto moved = rebase_path(m.path, it->second.first, it->second.second);
        if (!moved)
          return Error(EINVAL, "pid " + std::to_string(t.pid) + ": its " + hierarchy_name(m.controllers) + " cgroup " +
                                   m.path + " is not below the root process's " + it->second.first +
                                   ", so --cgroup-root cannot move it");
        m.path = *moved;
      }
    std::vector<Dir> kept;
    for (auto& d : dirs) {
      auto it = moves.find(d.controllers);
      if (it == moves.end()) {
        kept.push_back(std::move(d));
      } else if (auto moved = rebase_path(d.path, it->second.first, it->second.second); moved && *moved != "/") {
        d.path = *moved;
        kept.push_back(std::move(d));
      }
    }
    dirs = std::move(kept);
  }
  bool any = !dirs.empty();
  for (const auto& t : tasks) any = any || !t.memberships.empty();
  if (!any) return {};
  uint64_t start = now_us();
  CRYO_ASSIGN(auto mounted, host_hierarchies());
  std::stable_sort(dirs.begin(), dirs.end(), [](const Dir& a, const Dir& b) { return depth(a.path) < depth(b.path); });
  if (mode == Manage::kFresh)  // the deepest one that exists is named first
    for (auto it = dirs.rbegin(); it != dirs.rend(); ++it)
      if (const Hierarchy* h = find_hierarchy(mounted, it->controllers)) {
        struct stat st;
        std::string dir = h->mount_point + it->path;
        if (::stat(dir.c_str(), &st) == 0 && std::find(created->begin(), created->end(), dir) == created->end())
          return strict_refusal(*h, it->path);
      }
  for (const auto& d : dirs) {
    const Hierarchy* h = find_hierarchy(mounted, d.controllers);
    if (!h)
      return Error(ENOENT, "the " + hierarchy_name(d.controllers) +
                               " cgroup hierarchy is not mounted here (--manage-cgroups=ignore restores into cryo's "
                               "own cgroups)");
    CRYO_TRY(restore_dir(*h, d.path, d.props, d.owner, mode, created).wrap("cgroup " + d.path));
  }
  for (const auto& t : tasks)
    CRYO_TRY(join(t.pid, t.memberships, mounted, mode, created).wrap("pid " + std::to_string(t.pid)));
  log::debug("cgroups made, set and joined in " + std::to_string(now_us() - start) + " us");
  return {};
}

}  // namespace cryo::cgroup
