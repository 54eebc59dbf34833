#include "core/files/ghosts.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "core/files/devices.h"
#include "core/sys/io.h"
#include "core/sys/log.h"

namespace cryo::files {
namespace {

int open_under(int root, const std::string& path, int flags) {
  struct open_how how = {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT;
  return static_cast<int>(::syscall(SYS_openat2, root, path.c_str(), &how, sizeof how));
}

// A directory made because it was missing above the ghost: its parent and
// name, to remove it again afterwards.
struct MadeDir {
  UniqueFd parent;
  std::string name;
};

// Opens the directory `dir` under `root`, making the missing ones on the way
// (noted outermost first, so that they go again afterwards: a removed
// directory may have been inside another one removed since).
Result<UniqueFd> open_parent(int root, const std::string& dir, std::vector<MadeDir>* made) {
  UniqueFd at(open_under(root, "/", O_PATH | O_DIRECTORY));
  if (!at.valid()) return errno_error("open the root");
  size_t from = 1;
  while (from < dir.size()) {
    size_t slash = dir.find('/', from);
    if (slash == std::string::npos) slash = dir.size();
    std::string prefix = dir.substr(0, slash), name = dir.substr(from, slash - from);
    from = slash + 1;
    if (name.empty()) continue;
    UniqueFd next(open_under(root, prefix, O_PATH | O_DIRECTORY));
    if (!next.valid() && errno == ENOENT && name != "." && name != "..") {
      if (::mkdirat(at.get(), name.c_str(), 0700) < 0) return errno_error("make the missing directory " + prefix);
      UniqueFd parent(::fcntl(at.get(), F_DUPFD_CLOEXEC, 0));
      made->push_back({std::move(parent), name});
      next = UniqueFd(::openat(at.get(), name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    }
    if (!next.valid()) return errno_error("open " + prefix);
    at = std::move(next);
  }
  return at;
}

void remove_made(const std::vector<MadeDir>& made) {
  for (auto it = made.rbegin(); it != made.rend(); ++it) ::unlinkat(it->parent.get(), it->name.c_str(), AT_REMOVEDIR);
}

int make_node(int dir, const std::string& name, const image::Content& c) {
  mode_t type = c.mode() & S_IFMT;
  if (type == S_IFDIR) return ::mkdirat(dir, name.c_str(), 0700);
  return ::mknodat(dir, name.c_str(), type | 0600, static_cast<dev_t>(c.rdev()));
}

}  // namespace

Result<UniqueFd> open_in_root(int root, const std::string& path, int flags) {
  if (root < 0) return open_file(path, flags);
  UniqueFd fd(open_under(root, path, flags));
  if (!fd.valid()) return errno_error("open " + path + " in the tree's mount namespace");
  return fd;
}

Result<UniqueFd> make_ghost_node(const image::Content& c, int root) {
  mode_t type = c.mode() & S_IFMT;
  std::string kind = type == S_IFDIR ? "directory" : type == S_IFIFO ? "FIFO" : "device node";
  std::string what = "removed " + kind + " " + c.name();
  if (type != S_IFDIR && type != S_IFIFO && type != S_IFCHR && type != S_IFBLK)
    return Error(EINVAL, what + ": not a kind of file cryo makes again");
  const std::string& path = c.name();
  if (path.size() < 2 || path[0] != '/' || path.back() == '/' || path.find("/../") != std::string::npos)
    return Error(EINVAL, what + ": not an absolute path");
  std::string base = path.substr(path.rfind('/') + 1);
  if (base == "." || base == "..") return Error(EINVAL, what + ": not a file's name");
  if (type == S_IFCHR || type == S_IFBLK) {
    // The image may not make a node of a device cryo would not reopen.
    std::string why = device_refusal(c.mode(), static_cast<dev_t>(c.rdev()), O_WRONLY);
    if (!why.empty())
      return Error(EINVAL, what + " (" + std::to_string(major(c.rdev())) + ":" + std::to_string(minor(c.rdev())) +
                               ") " + why);
  }
  UniqueFd own_root;
  if (root < 0) {
    own_root = UniqueFd(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!own_root.valid()) return errno_error(what + ": open /");
    root = own_root.get();
  }
  std::vector<MadeDir> made;
  auto parent = open_parent(root, path.substr(0, path.rfind('/')), &made);
  if (!parent.ok()) {
    remove_made(made);
    return std::move(parent).error().wrap(what);
  }
  int dir = parent->get();
  // Where the path is taken again, a hidden name beside it (as CRIU does):
  // /proc then shows that name.
  std::string at = base;
  int made_node = make_node(dir, at, c);
  if (made_node < 0 && errno == EEXIST) {
    at = ".cryo-ghost-" + std::to_string(c.id()) + "-" + std::to_string(::getpid());
    log::warn(what + ": the path is taken, made as " + path.substr(0, path.rfind('/') + 1) + at);
    made_node = make_node(dir, at, c);
  }
  if (made_node < 0) {
    int err = errno;
    remove_made(made);
    return Error(err, what + ": make it again at " + path.substr(0, path.rfind('/') + 1) + at);
  }
  UniqueFd fd(::openat(dir, at.c_str(), (type == S_IFDIR ? O_RDONLY | O_DIRECTORY : O_PATH) | O_NOFOLLOW | O_CLOEXEC));
  int err = fd.valid() ? 0 : errno;
  if (!err && (::fchownat(dir, at.c_str(), c.uid(), c.gid(), AT_SYMLINK_NOFOLLOW) < 0 ||
               ::fchmodat(dir, at.c_str(), c.mode() & 07777, 0) < 0))
    err = errno;
  int removed = ::unlinkat(dir, at.c_str(), type == S_IFDIR ? AT_REMOVEDIR : 0);
  if (!err && removed < 0) err = errno;
  remove_made(made);
  if (err) return Error(err, what + ": open it, give it its owner and mode, and remove it again");
  return fd;
}

}  // namespace cryo::files
