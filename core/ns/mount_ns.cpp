#include "core/ns/mount_ns.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <linux/mount.h>
#include <linux/openat2.h>
#include <limits.h>

#include <algorithm>
#include <memory>
#include <utility>
#include <map>
#include <set>
#include <vector>

#include "core/cgroup/membership.h"
#include "core/cgroup/tree_cgroups.h"
#include "core/files/external.h"
#include "core/files/mounts.h"
#include "core/ns/cgroup_ns.h"
#include "core/ns/user_ns.h"
#include "core/sys/fdpass.h"
#include "core/sys/io.h"
#include "core/sys/log.h"
#include "core/sys/util.h"

namespace cryo::ns {
namespace {

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t at; (at = text.find(sep, start)) != std::string::npos; start = at + 1) out.push_back(text.substr(start, at - start));
  out.push_back(text.substr(start));
  return out;
}

constexpr uint64_t kMaxTmpfsBytes = 64ULL << 20;  // what a tmpfs of the tree may hold in the image

// Filesystems whose instance belongs to a namespace of the mounting process.
bool namespace_bound(const std::string& fstype) {
  return fstype == "proc" || fstype == "sysfs" || fstype == "mqueue" || fstype == "cgroup" || fstype == "cgroup2";
}

uint64_t mount_flags(const std::string& options) {
  uint64_t flags = 0;
  bool atime_given = false;
  for (const auto& word : split(options, ',')) {
    if (word == "ro") flags |= MS_RDONLY;
    else if (word == "nosuid") flags |= MS_NOSUID;
    else if (word == "nodev") flags |= MS_NODEV;
    else if (word == "noexec") flags |= MS_NOEXEC;
    else if (word == "noatime") flags |= MS_NOATIME, atime_given = true;
    else if (word == "nodiratime") flags |= MS_NODIRATIME;
    else if (word == "relatime") flags |= MS_RELATIME, atime_given = true;
  }
  if (!atime_given) flags |= MS_STRICTATIME;
  return flags;
}

// mountinfo's super options without rw/ro (those are the mount's, above).
std::string fs_options(const std::string& super) {
  std::string out;
  for (const auto& word : split(super, ',')) {
    if (word == "rw" || word == "ro" || word.empty()) continue;
    out += (out.empty() ? "" : ",") + word;
  }
  return out;
}

std::string join_path(const std::string& dir, const std::string& rest) {
  if (rest.empty() || rest == "/") return dir;
  if (dir == "/") return rest;
  return dir + rest;
}

// Where (dev, root) of a mount is in cryo's namespace: the mount point of a
// mount of that filesystem whose root holds it, and the rest of the path.
std::string host_path_of(const files::MountInfo& m, const std::vector<files::MountInfo>& host) {
  for (const auto& h : host) {
    if (h.dev != m.dev) continue;
    bool holds = h.root == "/" || m.root == h.root || m.root.starts_with(h.root + "/");
    if (!holds) continue;
    std::string rest = h.root == "/" ? m.root : m.root.substr(h.root.size());
    std::string path = join_path(h.mount_point, rest);
    if (::access(path.c_str(), F_OK) == 0) return path;
  }
  return "";
}

bool same_inode(const std::string& a, const std::string& b) {
  struct stat sa, sb;
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

Status read_xattrs(int fd, image::TmpfsNode* node) {
  ssize_t size = ::flistxattr(fd, nullptr, 0);
  if (size <= 0) return {};
  std::string names(static_cast<size_t>(size), '\0');
  size = ::flistxattr(fd, names.data(), names.size());
  if (size < 0) return errno_error("flistxattr");
  for (size_t i = 0; i < static_cast<size_t>(size);) {
    std::string name(names.c_str() + i);
    i += name.size() + 1;
    ssize_t len = ::fgetxattr(fd, name.c_str(), nullptr, 0);
    if (len < 0) return errno_error("fgetxattr " + name);
    std::string value(static_cast<size_t>(len), '\0');
    len = ::fgetxattr(fd, name.c_str(), value.data(), value.size());
    if (len < 0) return errno_error("fgetxattr " + name);
    value.resize(static_cast<size_t>(len));
    (*node->mutable_xattrs())[name] = value;
  }
  return {};
}

void fill_node(const struct stat& st, const std::string& path, image::TmpfsNode* node) {
  node->set_path(path);
  node->set_mode(st.st_mode);
  node->set_uid(st.st_uid);
  node->set_gid(st.st_gid);
  node->set_rdev(st.st_rdev);
  node->set_mtime_ns(static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec);
}

// Every node below the directory dir (path rel), parents first.
Status walk_tmpfs(int dir, const std::string& rel, image::Mount* out, uint64_t* bytes) {
  int copy = ::dup(dir);
  if (copy < 0) return errno_error("dup");
  std::unique_ptr<DIR, int (*)(DIR*)> d(::fdopendir(copy), ::closedir);
  if (!d) {
    ::close(copy);
    return errno_error("fdopendir " + rel);
  }
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = ::readdir(d.get()))
    if (std::string_view(e->d_name) != "." && std::string_view(e->d_name) != "..") names.emplace_back(e->d_name);
  if (errno) return errno_error("readdir " + rel);
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    std::string path = rel.empty() ? name : rel + "/" + name;
    struct stat st;
    if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) return errno_error("stat " + path);
    auto* node = out->add_nodes();
    fill_node(st, path, node);
    if (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode)) {
      UniqueFd fd(::openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0)));
      if (!fd.valid()) return errno_error("open " + path);
      CRYO_TRY(read_xattrs(fd.get(), node).wrap(path));
      if (S_ISDIR(st.st_mode)) {
        CRYO_TRY(walk_tmpfs(fd.get(), path, out, bytes));
      } else {
        if ((*bytes += static_cast<uint64_t>(st.st_size)) > kMaxTmpfsBytes)
          return Error("it holds more than " + std::to_string(kMaxTmpfsBytes >> 20) + " MiB (not supported yet)");
        CRYO_ASSIGN(std::string data, read_fd(fd.get()));
        node->set_data(std::move(data));
      }
    } else if (S_ISLNK(st.st_mode)) {
      std::string target(PATH_MAX, '\0');
      ssize_t n = ::readlinkat(dir, name.c_str(), target.data(), target.size());
      if (n < 0) return errno_error("readlink " + path);
      target.resize(static_cast<size_t>(n));
      node->set_target(target);
    }
  }
  return {};
}

// A detached copy of the one mount at mount_point in pid's namespace. Only a
// process of that namespace may make it (open_tree), so a child joins it and
// holds the copy until cryo has taken it (pidfd_getfd).
// An unbindable mount cannot be copied: it is made private for the moment of
// the copy, then unbindable again (having no peers, it loses nothing).
Result<UniqueFd> clone_mount(pid_t pid, const std::string& mount_point, bool unbindable) {
  CRYO_ASSIGN(UniqueFd ns, open_file("/proc/" + std::to_string(pid) + "/ns/mnt", O_RDONLY | O_CLOEXEC));
  int up[2], down[2];
  if (::pipe2(up, O_CLOEXEC) < 0) return errno_error("pipe2");
  UniqueFd up_read(up[0]), up_write(up[1]);
  if (::pipe2(down, O_CLOEXEC) < 0) return errno_error("pipe2");
  UniqueFd down_read(down[0]), down_write(down[1]);
  pid_t child = ::fork();
  if (child < 0) return errno_error("fork");
  if (child == 0) {
    down_write.reset();  // or the EOF below would never come
    up_read.reset();
    int result[2] = {-1, 0};
    if (::setns(ns.get(), CLONE_NEWNS) == 0 &&
        (!unbindable || ::mount(nullptr, mount_point.c_str(), nullptr, MS_PRIVATE, nullptr) == 0)) {
      result[0] = static_cast<int>(::syscall(SYS_open_tree, AT_FDCWD, mount_point.c_str(), OPEN_TREE_CLONE));
      int saved = errno;
      if (unbindable && ::mount(nullptr, mount_point.c_str(), nullptr, MS_UNBINDABLE, nullptr) < 0) result[0] = -1;
      else errno = saved;
    }
    result[1] = result[0] < 0 ? errno : 0;
    (void)!::write(up_write.get(), result, sizeof result);
    char c;
    (void)!::read(down_read.get(), &c, 1);  // EOF once cryo has the copy
    ::_exit(0);
  }
  up_write.reset();
  down_read.reset();
  int result[2] = {-1, EIO};
  bool got = ::read(up_read.get(), result, sizeof result) == sizeof result;
  UniqueFd copy;
  if (got && result[0] >= 0) {
    auto copied = copy_fd(child, result[0]);  // a child not yet waited for: its pid is its own
    if (copied.ok())
      copy = std::move(*copied);
    else
      result[1] = copied.error().code();
  }
  down_write.reset();
  while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
  }
  if (!copy.valid()) return Error(result[1], "open_tree " + mount_point + " in the tree's mount namespace");
  return copy;
}

// What a tmpfs of the tree holds, read from a detached copy of that one mount
// (whatever is mounted on top of its directories stays out).
Status dump_tmpfs(pid_t root, image::Mount* out) {
  CRYO_ASSIGN(UniqueFd copy, clone_mount(root, out->mount_point(), out->unbindable()));
  UniqueFd tree(::openat(copy.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));  // open_tree gives an O_PATH fd
  if (!tree.valid()) return errno_error("open the copy of the mount");
  struct stat st;
  if (::fstat(tree.get(), &st) < 0) return errno_error("fstat");
  fill_node(st, "", out->add_nodes());
  uint64_t bytes = 0;
  return walk_tmpfs(tree.get(), "", out, &bytes);
}

std::string describe(const image::Mount& m) {
  return "mount " + std::to_string(m.id()) + " (" + m.fstype() + " at " + m.mount_point() + ")";
}

// The root a mount of a namespace-bound filesystem has when the tree's own
// namespace made it, as cryo sees it: "/", or for a cgroup hierarchy the
// root of the tree's cgroup namespace in it.
std::string namespace_root(const files::MountInfo& mi, const image::Tree& cgroup_ns) {
  if ((mi.fstype != "cgroup" && mi.fstype != "cgroup2") || cgroup_ns.cgroup_ns_size() == 0) return "/";
  auto words = split(mi.super_options, ',');
  for (const auto& r : cgroup_ns.cgroup_ns()) {
    bool fits = mi.fstype == "cgroup2" ? r.controllers().empty() : !r.controllers().empty();
    for (const auto& c : split(r.controllers(), ','))
      if (fits && !c.empty() && std::find(words.begin(), words.end(), c) == words.end()) fits = false;
    if (fits) return r.path();
  }
  return "";  // a hierarchy the namespace does not know: not the tree's own
}

bool is_at_or_below(const std::string& path, const std::string& dir) {
  return path == dir || dir == "/" || path.starts_with(dir + "/");
}

// A bind of part of the filesystem source made: where in it, and a check
// that the restore can still reach it where it made source (no later mount
// covers source's mount point before this one is made).
Status set_own_bind(const image::Mount& source, const files::MountInfo& mi, const image::MountNs& ns, image::Mount* m) {
  std::string what = describe(*m);
  const std::string& base = source.root();
  if (!is_at_or_below(mi.root, base))
    return Error(what + ": it binds " + mi.root + ", outside what " + describe(source) + " shows (not supported yet)");
  m->set_kind(image::Mount::OWN_BIND);
  m->set_source_id(source.id());
  m->set_source_path(base == "/" ? mi.root.substr(1) : mi.root.substr(std::min(mi.root.size(), base.size() + 1)));
  const std::string& index = m->source_path();
  unsigned major_dev = 0, minor_dev = 0;
  if (source.fstype() == "devpts" && !index.empty() && index.size() < 7 &&
      index.find_first_not_of("0123456789") == std::string::npos &&
      std::sscanf(mi.dev.c_str(), "%u:%u", &major_dev, &minor_dev) == 2) {
    unsigned n = static_cast<unsigned>(std::stoul(index));
    m->set_terminal_key(files::tty_key(makedev(136 + (n >> 8), n & 0xff), makedev(major_dev, minor_dev)));
  }
  bool after = false;
  for (const auto& other : ns.mounts()) {
    if (other.id() == source.id()) after = true;
    else if (after && other.id() != m->id() && is_at_or_below(source.mount_point(), other.mount_point()))
      return Error(what + ": it binds from " + describe(source) + ", which " + describe(other) +
                   " covers (not supported yet)");
  }
  return {};
}

// An overlay's layers, by option name (lowerdir, upperdir, workdir,
// datadir): each path as the kernel shows it, which is as it was given.
std::vector<std::pair<std::string, std::string>> overlay_layers(const std::string& options) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& word : split(options, ',')) {
    size_t eq = word.find('=');
    if (eq == std::string::npos) continue;
    std::string key = word.substr(0, eq), value = word.substr(eq + 1);
    if (key == "lowerdir") {
      // lower1:lower2[::data1::data2]
      for (const auto& dir : split(value, ':'))
        if (!dir.empty()) out.emplace_back(key, dir);
    } else if (key == "upperdir" || key == "workdir" || key == "datadir") {
      out.emplace_back(key, value);
    }
  }
  return out;
}

// An overlay the tree mounted is made again from its layers, by their
// paths in the tree's mount namespace: each must be an absolute path there
// that leads, through no symlink, to a directory. A relative path (relative
// to where the mounter was) or one outside the tree's root is refused.
Status check_overlay_layers(pid_t root, const image::Mount& m) {
  if (m.options().find('\\') != std::string::npos)
    return Error("its options hold an escaped character (not supported yet): " + m.options());
  auto layers = overlay_layers(m.options());
  if (std::none_of(layers.begin(), layers.end(), [](const auto& l) { return l.first == "lowerdir"; }))
    return Error("no lowerdir in its options (layers given by file descriptor are not supported yet): " + m.options());
  CRYO_ASSIGN(UniqueFd tree_root, open_file("/proc/" + std::to_string(root) + "/root", O_PATH | O_DIRECTORY | O_CLOEXEC));
  for (const auto& [key, dir] : layers) {
    if (dir[0] != '/')
      return Error("its " + key + " " + dir + " is a relative path: where it was relative to is unknown (not supported)");
    struct open_how how = {};
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    UniqueFd fd(static_cast<int>(::syscall(SYS_openat2, tree_root.get(), dir.c_str(), &how, sizeof how)));
    if (!fd.valid())
      return errno_error("its " + key + " " + dir + " is not a directory of the tree's mounts (one outside its "
                         "root, or reached through a symlink, cannot be made again)");
  }
  return {};
}

}  // namespace


Status dump_mount_ns(pid_t root, image::MountNs* out, const std::map<std::string, std::string>& externals,
                     bool must_exist) {
  CRYO_ASSIGN(std::string text, read_file("/proc/" + std::to_string(root) + "/mountinfo"));
  CRYO_ASSIGN(std::string host_text, read_file("/proc/self/mountinfo"));
  auto mounts = files::parse_mountinfo(text);
  auto host = files::parse_mountinfo(host_text);
  std::set<uint32_t> ids;
  for (const auto& m : mounts) ids.insert(m.id);
  // Parents first; mountinfo lists a namespace's mounts in the order they
  // were made, which stacked mounts must keep.
  std::vector<const files::MountInfo*> order;
  std::set<uint32_t> placed;
  for (const auto& m : mounts)
    if (!ids.count(m.parent) || m.parent == m.id) {
      if (m.mount_point != "/") return Error("the mount namespace of " + pid_str(root) + " has a root at " + m.mount_point);
      order.push_back(&m);
      placed.insert(m.id);
    }
  if (order.size() != 1) return Error("the mount namespace of " + pid_str(root) + " has " + std::to_string(order.size()) + " roots");
  for (bool progress = true; progress;) {
    progress = false;
    for (const auto& m : mounts)
      if (!placed.count(m.id) && placed.count(m.parent)) {
        order.push_back(&m);
        placed.insert(m.id);
        progress = true;
      }
  }
  std::set<std::string> host_devs;
  for (const auto& h : host) host_devs.insert(h.dev);
  std::map<std::string, const image::Mount*> own_sources;  // by dev: the mount that made a filesystem of the tree's own
  std::set<uint32_t> ns_bound;  // mounts made by the tree's root: those and what is on them
  image::Tree cgroup_ns;
  CRYO_TRY(dump_cgroup_ns(root, &cgroup_ns));
  for (const auto* mi : order) {
    auto* m = out->add_mounts();
    m->set_id(mi->id);
    m->set_parent_id(mi == order.front() ? 0 : mi->parent);
    m->set_mount_point(mi->mount_point);
    m->set_root(mi->root);
    m->set_fstype(mi->fstype);
    m->set_source(mi->source);
    m->set_options(fs_options(mi->super_options));
    m->set_super_read_only(mi->super_options == "ro" || mi->super_options.starts_with("ro,"));
    m->set_flags(mount_flags(mi->mount_options));
    for (const auto& tag : mi->tags) {
      if (tag.starts_with("shared:")) m->set_shared(true);
      if (tag.starts_with("master:")) m->set_slave(true);
      if (tag == "unbindable") m->set_unbindable(true);
    }
    std::string what = describe(*m);
    std::string seen_at = "/proc/" + std::to_string(root) + "/root" + mi->mount_point;
    bool above_bound = ns_bound.count(mi->parent) > 0;
    auto own = own_sources.find(mi->dev);
    if (auto named = externals.find(mi->mount_point); named != externals.end() && mi != order.front()) {
      m->set_kind(image::Mount::BIND);  // bound from what the restore is given
      m->set_host_path(host_path_of(*mi, host));
      m->set_external_key(named->second);
    } else if (mi == order.front()) {
      m->set_kind(image::Mount::ROOT);
      m->set_host_path(host_path_of(*mi, host));
      if (m->host_path() == "/")
        return Error("the mount namespace of " + pid_str(root) + " has cryo's root for its own: it was not pivoted "
                     "into a root of its own (unshare --mount without pivot_root; not supported yet)");
    } else if (namespace_bound(mi->fstype) && own == own_sources.end() && mi->root == namespace_root(*mi, cgroup_ns)) {
      m->set_kind(image::Mount::NS_BOUND);
    } else if (own != own_sources.end()) {
      CRYO_TRY(set_own_bind(*own->second, *mi, *out, m));
    } else if (namespace_bound(mi->fstype) && !host_devs.count(mi->dev)) {
      return Error(what + ": a bind of part of a " + mi->fstype + " that is not the tree's own (not supported yet)");
    } else if (mi->fstype == "overlay" && !host_devs.count(mi->dev)) {
      if (mi->root != "/") return Error(what + ": a bind of part of a filesystem of the tree's own (not supported yet)");
      m->set_kind(image::Mount::FRESH);
      CRYO_TRY(check_overlay_layers(root, *m).wrap(what));
    } else if ((mi->fstype == "tmpfs" || mi->fstype == "devpts") && !host_devs.count(mi->dev)) {
      if (mi->root != "/") return Error(what + ": a bind of part of a filesystem of the tree's own (not supported yet)");
      m->set_kind(image::Mount::FRESH);
      if (mi->fstype == "tmpfs") CRYO_TRY(dump_tmpfs(root, m).wrap(what));
    } else {
      std::string from = host_path_of(*mi, host);
      if (from.empty())
        return Error(what + ": its source (" + mi->source + " " + mi->root +
                     ") is neither reachable from cryo's mount namespace nor made by the tree (not supported yet)");
      if (!same_inode(from, seen_at))
        return Error(what + ": " + from + " is no longer what is mounted there (not supported yet)");
      m->set_kind(image::Mount::BIND);
      m->set_host_path(from);
    }
    if (m->kind() == image::Mount::NS_BOUND || m->kind() == image::Mount::FRESH) own_sources.emplace(mi->dev, m);
    if (m->kind() == image::Mount::NS_BOUND || above_bound ||
        (m->kind() == image::Mount::OWN_BIND && ns_bound.count(m->source_id())))
      ns_bound.insert(mi->id);
  }
  for (const auto& external : must_exist ? externals : std::map<std::string, std::string>{}) {
    const std::string& point = external.first;  // (a structured binding cannot be captured before C++20's clang 16)
    if (std::none_of(out->mounts().begin(), out->mounts().end(), [&](const image::Mount& m) { return m.mount_point() == point; }))
      return Error("--external mnt[" + point + "]: no mount of the tree's mount namespace is there");
  }
  return {};
}

Status map_external_mounts(image::MountNs* ns, const std::map<std::string, std::string>& given, bool must_exist) {
  for (const auto& entry : must_exist ? given : std::map<std::string, std::string>{}) {
    const std::string& key = entry.first;
    if (std::none_of(ns->mounts().begin(), ns->mounts().end(), [&](const image::Mount& m) {
          return m.external_key() == key || m.mount_point() == key;
        }))
      return Error("--external mnt[" + key + "]: no mount of the image has that key");
  }
  for (auto& m : *ns->mutable_mounts()) {
    auto it = given.find(m.external_key());
    if (m.external_key().empty() || it == given.end()) it = given.find(m.mount_point());
    if (it != given.end()) {
      if (m.kind() != image::Mount::BIND) return Error(describe(m) + ": only a bind mount can be given by --external");
      m.set_host_path(it->second);
    } else if (!m.external_key().empty()) {
      return Error(describe(m) + " is external: restore with --external mnt[" + m.external_key() + "]:PATH");
    }
  }
  return {};
}

Status map_terminal_mounts(image::MountNs* ns, const std::vector<files::InheritFd>& given) {
  for (auto& m : *ns->mutable_mounts()) {
    if (m.terminal_key().empty() || m.kind() != image::Mount::OWN_BIND) continue;
    for (const auto& in : given)
      if (!in.debug && in.key == m.terminal_key()) {
        m.set_kind(image::Mount::BIND);  // the holder, a fork of cryo, has the fd
        m.set_host_path("/proc/self/fd/" + std::to_string(in.fd));
      }
  }
  return {};
}

Status move_cgroup_binds(image::MountNs* ns, const std::map<std::string, std::pair<std::string, std::string>>& moves) {
  if (moves.empty()) return {};
  CRYO_ASSIGN(auto mounted, cgroup::host_hierarchies());
  for (auto& m : *ns->mutable_mounts()) {
    if (m.kind() != image::Mount::BIND || (m.fstype() != "cgroup" && m.fstype() != "cgroup2")) continue;
    for (const auto& [controllers, paths] : moves) {
      const cgroup::Hierarchy* h = cgroup::find_hierarchy(mounted, controllers);
      if (!h || (controllers.empty() != (m.fstype() == "cgroup2"))) continue;
      const std::string& from = m.host_path();
      std::string rest;
      if (from == h->mount_point) rest = "/";
      else if (from.starts_with(h->mount_point + "/")) rest = from.substr(h->mount_point.size());
      else continue;
      if (auto moved = cgroup::rebase_path(rest, paths.first, paths.second)) {
        m.set_host_path(*moved == "/" ? h->mount_point : h->mount_point + *moved);
        log::info(describe(m) + ": binds " + m.host_path() + " (--cgroup-root), not " + from);
      }
    }
  }
  return {};
}

Status check_files_in_mount_ns(const std::map<pid_t, image::Process>& cores, const image::Files& files) {
  std::map<uint32_t, const image::FileDesc*> by_id;
  for (const auto& f : files.files()) by_id[f.id()] = &f;
  std::set<int> host_devpts_ptys;  // a pty made again as /dev/pts/N would be cryo's, not the tree's
  for (const auto& pty : files.ptys())
    if (pty.devpts().empty()) host_devpts_ptys.insert(pty.index());
  for (const auto& [pid, core] : cores) {
    for (const auto& fd : core.fds()) {
      auto it = by_id.find(fd.file_id());
      if (it == by_id.end()) continue;
      const auto& f = *it->second;
      std::string why;
      switch (f.kind()) {
        case image::FileDesc::PTY_MASTER:
        case image::FileDesc::PTY_SLAVE:
        case image::FileDesc::TTY_CURRENT:
          if (!host_devpts_ptys.count(f.pty_index())) break;
          why = "a terminal of the host's devpts, not the tree's own";
          break;
        default: break;
      }
      if (!why.empty())
        return Error(pid_str(pid) + " fd " + std::to_string(fd.fd()) + ": " + why + " (" + f.path() +
                     ") in a mount namespace of the tree's own (not supported yet)");
    }
  }
  return {};
}

namespace {

// Each node's parent must be a directory the image made before it: no name
// may lead through a symlink (or out of the mount) to somewhere else.
Status check_node_names(const image::Mount& m) {
  std::set<std::string> dirs = {""};
  for (const auto& n : m.nodes()) {
    const std::string& p = n.path();
    if (p.empty()) continue;
    size_t slash = p.rfind('/');
    std::string parent = slash == std::string::npos ? "" : p.substr(0, slash);
    std::string name = slash == std::string::npos ? p : p.substr(slash + 1);
    if (name.empty() || name == "." || name == ".." || !dirs.count(parent))
      return Error(EINVAL, "a tmpfs node out of place: " + p);
    if ((n.mode() & S_IFMT) == S_IFDIR) dirs.insert(p);
  }
  return {};
}

Status write_nodes(const image::Mount& m, const std::string& target) {
  CRYO_TRY(check_node_names(m));
  for (const auto& n : m.nodes()) {
    std::string path = n.path().empty() ? target : target + "/" + n.path();
    mode_t type = n.mode() & S_IFMT, perms = n.mode() & 07777;
    if (n.path().empty()) {
      // the mount's root exists
    } else if (type == S_IFDIR) {
      if (::mkdir(path.c_str(), 0700) < 0) return errno_error("mkdir " + path);
    } else if (type == S_IFREG) {
      UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!fd.valid()) return errno_error("create " + path);
      CRYO_TRY(write_all(fd.get(), n.data()).wrap(path));
    } else if (type == S_IFLNK) {
      if (::symlink(n.target().c_str(), path.c_str()) < 0) return errno_error("symlink " + path);
    } else if (::mknod(path.c_str(), type | 0600, static_cast<dev_t>(n.rdev())) < 0) {
      return errno_error("mknod " + path);
    }
    if (::lchown(path.c_str(), n.uid(), n.gid()) < 0) return errno_error("chown " + path);
    if (type != S_IFLNK && ::chmod(path.c_str(), perms) < 0) return errno_error("chmod " + path);
    for (const auto& [name, value] : n.xattrs())
      if (::lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0) < 0)
        return errno_error("setxattr " + name + " on " + path);
  }
  // Times last, children before their directories.
  for (int i = m.nodes_size() - 1; i >= 0; i--) {
    const auto& n = m.nodes(i);
    std::string path = n.path().empty() ? target : target + "/" + n.path();
    struct timespec times[2] = {{0, UTIME_OMIT}, {n.mtime_ns() / 1000000000LL, n.mtime_ns() % 1000000000LL}};
    if (::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) < 0) return errno_error("utimensat " + path);
  }
  return {};
}

// The mount's flags and propagation, once it is in place (and filled).
Status settle(const image::Mount& m, const std::string& target) {
  uint64_t flags = m.flags() & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME |
                                MS_RELATIME | MS_STRICTATIME);
  if (::mount(nullptr, target.c_str(), nullptr, MS_REMOUNT | MS_BIND | flags, nullptr) < 0)
    return errno_error("remount " + target + " with its flags");
  unsigned long propagation = m.slave() ? MS_SLAVE : MS_PRIVATE;
  if (::mount(nullptr, target.c_str(), nullptr, propagation, nullptr) < 0) return errno_error("propagation of " + target);
  if (m.shared() && ::mount(nullptr, target.c_str(), nullptr, MS_SHARED, nullptr) < 0)
    return errno_error("making " + target + " shared");
  return {};
}

// Last, once nothing is bound from it any more.
Status make_unbindable(const image::Mount& m, const std::string& target) {
  if (m.unbindable() && ::mount(nullptr, target.c_str(), nullptr, MS_UNBINDABLE, nullptr) < 0)
    return errno_error("making " + target + " unbindable").wrap(describe(m));
  return {};
}

// A detached copy of the one mount at path (or, from fd, of what path names below it).
Result<UniqueFd> clone_tree(int dir, const std::string& path, unsigned flags = 0) {
  int fd = static_cast<int>(::syscall(SYS_open_tree, dir, path.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | flags));
  if (fd < 0) return errno_error("open_tree " + path);
  return UniqueFd(fd);
}

Status attach(int tree, const std::string& target) {
  if (::syscall(SYS_move_mount, tree, "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) < 0)
    return errno_error("move_mount onto " + target);
  return {};
}

// A new filesystem of m's type and options, mounted nowhere yet (fsmount):
// the kernel checks then, in the namespace it is made in, that a user
// namespace may see all of it.
Result<UniqueFd> detached_mount(const image::Mount& m) {
  UniqueFd fs(static_cast<int>(::syscall(SYS_fsopen, m.fstype().c_str(), FSOPEN_CLOEXEC)));
  if (!fs.valid()) return errno_error("fsopen " + m.fstype());
  std::vector<std::string> words = m.options().empty() ? std::vector<std::string>() : split(m.options(), ',');
  if (m.super_read_only()) words.push_back("ro");
  for (const auto& word : words) {
    size_t eq = word.find('=');
    std::string key = word.substr(0, eq);
    long done = eq == std::string::npos
                    ? ::syscall(SYS_fsconfig, fs.get(), FSCONFIG_SET_FLAG, key.c_str(), nullptr, 0)
                    : ::syscall(SYS_fsconfig, fs.get(), FSCONFIG_SET_STRING, key.c_str(), word.c_str() + eq + 1, 0);
    if (done < 0) return errno_error("fsconfig " + word);
  }
  if (::syscall(SYS_fsconfig, fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0) return errno_error("fsconfig create");
  unsigned attrs = 0;
  if (m.flags() & MS_NOSUID) attrs |= MOUNT_ATTR_NOSUID;
  if (m.flags() & MS_NODEV) attrs |= MOUNT_ATTR_NODEV;
  if (m.flags() & MS_NOEXEC) attrs |= MOUNT_ATTR_NOEXEC;
  if (m.flags() & MS_NOATIME) attrs |= MOUNT_ATTR_NOATIME;
  else if (m.flags() & MS_STRICTATIME) attrs |= MOUNT_ATTR_STRICTATIME;
  if (m.flags() & MS_NODIRATIME) attrs |= MOUNT_ATTR_NODIRATIME;
  int fd = static_cast<int>(::syscall(SYS_fsmount, fs.get(), FSMOUNT_CLOEXEC, attrs));
  if (fd < 0) return errno_error("fsmount");
  return UniqueFd(fd);
}

// What makes the mounts of one process (the holder, or the tree's root):
// prefix is where the namespace's root is in it.
struct Maker {
  const image::MountNs& ns;
  std::string prefix;
  std::map<uint32_t, UniqueFd> host_copies;  // BIND mounts the tree's root makes: taken before it joins

  std::string at(const std::string& mount_point) const { return join_path(prefix, mount_point); }

  const image::Mount* find(uint32_t id) const {
    for (const auto& m : ns.mounts())
      if (m.id() == id) return &m;
    return nullptr;
  }

  // An OWN_BIND: part of the one mount its source made, reached through a
  // copy of that mount alone (nothing mounted on it, no way out of it).
  Status bind_own(const image::Mount& m, const std::string& target) const {
    const image::Mount* source = find(m.source_id());
    if (!source || source == &m || (source->kind() != image::Mount::FRESH && source->kind() != image::Mount::NS_BOUND))
      return Error(EINVAL, "its source, mount " + std::to_string(m.source_id()) + ", is not a filesystem of the tree's own");
    CRYO_ASSIGN(UniqueFd whole, clone_tree(AT_FDCWD, at(source->mount_point())));
    UniqueFd part = std::move(whole);
    if (!m.source_path().empty()) {
      struct open_how how = {};
      how.flags = O_PATH | O_CLOEXEC;
      how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
      UniqueFd inside(static_cast<int>(::syscall(SYS_openat2, part.get(), m.source_path().c_str(), &how, sizeof how)));
      if (!inside.valid() && !m.terminal_key().empty())
        return errno_error("pty " + m.source_path() + " of " + describe(*source) +
                           " is not there: hand a terminal over for it with --inherit-fd fd[N]:" + m.terminal_key());
      if (!inside.valid()) return errno_error("open " + m.source_path() + " in " + describe(*source));
      CRYO_ASSIGN(part, clone_tree(inside.get(), "", AT_EMPTY_PATH));
    }
    return attach(part.get(), target);
  }

  // An overlay, from its layers' paths in the tree: mounted with the root at
  // the tree's root (chroot), so that those paths lead there and the
  // options show them as the tree gave them.
  Status mount_overlay(const image::Mount& m) const {
    for (const auto& [key, dir] : overlay_layers(m.options()))
      if (dir.empty() || dir[0] != '/') return Error(EINVAL, "its " + key + " " + dir + " is not an absolute path");
    uint64_t flags = (m.flags() & ~MS_RDONLY) | (m.super_read_only() ? MS_RDONLY : 0);
    CRYO_ASSIGN(UniqueFd old_root, open_file("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    CRYO_ASSIGN(UniqueFd old_cwd, open_file(".", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (::chroot(prefix.c_str()) < 0) return errno_error("chroot " + prefix);
    if (::chdir("/") < 0) return errno_error("chdir / in " + prefix);
    int made = ::mount(m.source().c_str(), m.mount_point().c_str(), "overlay", flags, m.options().c_str());
    int err = errno;
    // Back to the holder's own root.
    if (::fchdir(old_root.get()) < 0 || ::chroot(".") < 0 || ::fchdir(old_cwd.get()) < 0)
      return errno_error("back to the root after mounting the overlay");
    if (made < 0) return Error(err, "mount overlay " + m.options());
    return {};
  }

  Status make(const image::Mount& m) {
    std::string what = describe(m);
    if (m.mount_point().empty() || m.mount_point()[0] != '/' || m.mount_point().find("/../") != std::string::npos ||
        m.mount_point().ends_with("/.."))
      return Error(EINVAL, what + ": not a mount point");
    std::string target = at(m.mount_point());
    if (m.kind() == image::Mount::OWN_BIND) {
      CRYO_TRY(bind_own(m, target).wrap(what));
    } else if (auto copy = host_copies.find(m.id()); copy != host_copies.end()) {
      CRYO_TRY(attach(copy->second.get(), target).wrap(what));
    } else if (m.kind() == image::Mount::BIND) {
      if (::mount(m.host_path().c_str(), target.c_str(), nullptr, MS_BIND, nullptr) < 0)
        return errno_error("bind " + m.host_path()).wrap(what);
    } else if (m.fstype() == "overlay") {
      CRYO_TRY(mount_overlay(m).wrap(what));
    } else {
      std::string options = m.options();
      if (m.fstype() == "devpts" && options.find("newinstance") == std::string::npos)
        options += std::string(options.empty() ? "" : ",") + "newinstance";
      bool fill = m.fstype() == "tmpfs";  // read-only once filled
      uint64_t flags = (m.flags() & ~MS_RDONLY) | (m.super_read_only() && !fill ? MS_RDONLY : 0);
      if (::mount(m.source().c_str(), target.c_str(), m.fstype().c_str(), flags, options.empty() ? nullptr : options.c_str()) < 0)
        return errno_error("mount").wrap(what);
      if (fill) CRYO_TRY(write_nodes(m, target).wrap(what));
      if (fill && m.super_read_only() && ::mount(nullptr, target.c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr) < 0)
        return errno_error("making the filesystem read-only").wrap(what);
    }
    return settle(m, target).wrap(what);
  }
};

// Which mounts the tree's root makes: namespace-bound ones, what is on them
// and binds of parts of them.
std::set<uint32_t> made_by_root_task(const image::MountNs& ns) {
  std::set<uint32_t> out;
  for (const auto& m : ns.mounts())
    if (m.kind() == image::Mount::NS_BOUND || out.count(m.parent_id()) ||
        (m.kind() == image::Mount::OWN_BIND && out.count(m.source_id())))
      out.insert(m.id());
  return out;
}

Status build_in_holder(const image::MountNs& ns, const std::string& root_dir, const image::UserNs* user_ns,
                       int user_fd) {
  // A terminal handed over for a bind (map_terminal_mounts) is a file of
  // cryo's namespace, which only a copy taken before leaving it can bring.
  std::map<uint32_t, UniqueFd> copies;
  for (const auto& m : ns.mounts()) {
    if (m.kind() != image::Mount::BIND || !m.host_path().starts_with("/proc/self/fd/")) continue;
    CRYO_ASSIGN(copies[m.id()], clone_tree(AT_FDCWD, m.host_path()).wrap(describe(m)));
  }
  if (user_ns) {  // the namespace it unshares is the user namespace's, and so is every mount made in it
    CRYO_TRY(enter_user_ns(*user_ns, image::Creds(), user_fd));
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // new credentials cleared it
  }
  if (::unshare(CLONE_NEWNS) < 0) return errno_error("unshare(CLONE_NEWNS)");
  // What the host mounts still reaches us; what we mount stays here.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) < 0) return errno_error("making / a slave");
  if (::mount(root_dir.c_str(), root_dir.c_str(), nullptr, MS_BIND, nullptr) < 0) {
    if (errno == EACCES && user_ns)  // it binds it as the namespace's root, as the container did
      return errno_error("bind " + root_dir + " as the root: the root of the tree's user namespace (host uid " +
                         std::to_string(host_ids_of_root(*user_ns).first) + ") cannot reach it");
    return errno_error("bind " + root_dir + " as the root");
  }
  auto later = made_by_root_task(ns);
  const image::Mount* root = nullptr;
  Maker maker{ns, root_dir, std::move(copies)};
  for (const auto& m : ns.mounts()) {
    if (m.kind() == image::Mount::ROOT) {
      root = &m;
      continue;
    }
    if (later.count(m.id())) continue;
    CRYO_TRY(maker.make(m));
  }
  if (!root) return Error(EINVAL, "the mount namespace has no root");
  CRYO_TRY(settle(*root, root_dir).wrap("the root " + root_dir));
  for (const auto& m : ns.mounts())
    if (m.kind() != image::Mount::ROOT && !later.count(m.id())) CRYO_TRY(make_unbindable(m, maker.at(m.mount_point())));
  if (::chdir(root_dir.c_str()) < 0) return errno_error("chdir " + root_dir);
  if (::syscall(SYS_pivot_root, ".", ".") < 0) return errno_error("pivot_root into " + root_dir);
  if (::umount2(".", MNT_DETACH) < 0) return errno_error("detaching the old root");
  if (::chdir("/") < 0) return errno_error("chdir /");
  CRYO_TRY(make_unbindable(*root, "/"));
  return {};
}

}  // namespace

MountHolder::MountHolder(MountHolder&& other) noexcept
    : pid_(std::exchange(other.pid_, 0)), root_(std::move(other.root_)), ns_(std::move(other.ns_)) {}

MountHolder& MountHolder::operator=(MountHolder&& other) noexcept {
  // Ours goes with `other`'s old self, which is destroyed as a temporary.
  MountHolder old(std::move(other));
  std::swap(pid_, old.pid_);
  std::swap(root_, old.root_);
  std::swap(ns_, old.ns_);
  return *this;
}

MountHolder::~MountHolder() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
}

Result<MountHolder> MountHolder::build(const image::MountNs& ns, const std::string& root_dir,
                                       const image::UserNs* user_ns, int user_fd) {
  struct stat st;
  if (root_dir.empty() || root_dir[0] != '/' || ::stat(root_dir.c_str(), &st) < 0 || !S_ISDIR(st.st_mode))
    return Error("the root " + root_dir + " is not a directory");
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) < 0) return errno_error("pipe2");
  UniqueFd from_holder(ends[0]), to_restorer(ends[1]);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return errno_error("fork of the mount namespace's holder");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    ::prctl(PR_SET_NAME, "cryo-mounts");
    auto built = build_in_holder(ns, root_dir, user_ns, user_fd);
    if (::getppid() != parent) ::_exit(1);
    std::string report = built.ok() ? "ok" : std::to_string(built.error().code()) + " " + built.error().context();
    (void)write_all(to_restorer.get(), report);
    to_restorer.reset();
    if (!built.ok()) ::_exit(1);
    for (;;) ::pause();
  }
  MountHolder holder;
  holder.pid_ = pid;
  to_restorer.reset();
  CRYO_ASSIGN(std::string report, read_fd(from_holder.get()));
  if (report != "ok") {
    int code = std::atoi(report.c_str());
    std::string text = report.substr(std::min(report.size(), report.find(' ') + 1));
    return Error(code, "making the tree's mount namespace: " + (report.empty() ? "the holder died" : text));
  }
  std::string base = "/proc/" + std::to_string(pid);
  CRYO_ASSIGN(holder.root_, open_file(base + "/root", O_PATH | O_DIRECTORY | O_CLOEXEC));
  CRYO_ASSIGN(holder.ns_, open_file(base + "/ns/mnt", O_RDONLY | O_CLOEXEC));
  return holder;
}

Status finish_in_root_task(const image::MountNs& ns, int ns_fd, bool in_user_ns) {
  auto mine = made_by_root_task(ns);
  Maker maker{ns, "/", {}};
  // In a user namespace, copies (open_tree) and fresh mounts are only made in
  // a mount namespace it owns: a copy of cryo's, where the host's proc and
  // sysfs are fully visible.
  if (in_user_ns && ::unshare(CLONE_NEWNS) < 0) return errno_error("unshare(CLONE_NEWNS) in the tree's user namespace");
  // What is bound from cryo's side is out of reach once inside: copies first.
  for (const auto& m : ns.mounts()) {
    if (!mine.count(m.id()) || m.kind() != image::Mount::BIND) continue;
    CRYO_ASSIGN(maker.host_copies[m.id()], clone_tree(AT_FDCWD, m.host_path()).wrap(describe(m)));
  }
  for (const auto& m : ns.mounts()) {
    if (!in_user_ns || !mine.count(m.id()) || m.kind() != image::Mount::NS_BOUND) continue;
    if (m.fstype() != "proc" && m.fstype() != "sysfs") continue;
    CRYO_ASSIGN(maker.host_copies[m.id()], detached_mount(m).wrap(describe(m)));
  }
  if (::setns(ns_fd, CLONE_NEWNS) < 0) return errno_error("joining the tree's mount namespace");
  for (const auto& m : ns.mounts())
    if (mine.count(m.id())) CRYO_TRY(maker.make(m));
  for (const auto& m : ns.mounts())
    if (mine.count(m.id())) CRYO_TRY(make_unbindable(m, m.mount_point()));
  if (::chdir("/") < 0) return errno_error("chdir /");
  return {};
}

std::string default_root(const image::MountNs& ns) {
  for (const auto& m : ns.mounts())
    if (m.kind() == image::Mount::ROOT) return m.host_path();
  return "";
}

}  // namespace cryo::ns
