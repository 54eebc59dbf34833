#include "core/files/ghosts.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "core/files/devices.h"
#include "core/sys/log.h"

namespace cryo::files {
namespace {

// Makes the directories missing above `path`, noting them (outermost first)
// so that they go again afterwards: a removed directory may have been inside
// another one removed since.
Status make_parents(const std::string& path, std::vector<std::string>* made) {
  for (size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1)) {
    std::string dir = path.substr(0, slash);
    if (::mkdir(dir.c_str(), 0700) == 0)
      made->push_back(dir);
    else if (errno != EEXIST)
      return errno_error("make the missing directory " + dir);
  }
  return {};
}

void remove_parents(const std::vector<std::string>& made) {
  for (auto it = made.rbegin(); it != made.rend(); ++it) ::rmdir(it->c_str());
}

int make_node(const std::string& at, const image::Content& c) {
  mode_t type = c.mode() & S_IFMT;
  if (type == S_IFDIR) return ::mkdir(at.c_str(), 0700);
  return ::mknod(at.c_str(), type | 0600, static_cast<dev_t>(c.rdev()));
}

}  // namespace

Result<UniqueFd> make_ghost_node(const image::Content& c) {
  mode_t type = c.mode() & S_IFMT;
  std::string kind = type == S_IFDIR ? "directory" : type == S_IFIFO ? "FIFO" : "device node";
  std::string what = "removed " + kind + " " + c.name();
  if (type != S_IFDIR && type != S_IFIFO && type != S_IFCHR && type != S_IFBLK)
    return Error(EINVAL, what + ": not a kind of file cryo makes again");
  const std::string& path = c.name();
  if (path.size() < 2 || path[0] != '/' || path.back() == '/' || path.find("/../") != std::string::npos)
    return Error(EINVAL, what + ": not an absolute path");
  if (type == S_IFCHR || type == S_IFBLK) {
    // The image may not make a node of a device cryo would not reopen.
    std::string why = device_refusal(c.mode(), static_cast<dev_t>(c.rdev()), O_WRONLY);
    if (!why.empty())
      return Error(EINVAL, what + " (" + std::to_string(major(c.rdev())) + ":" + std::to_string(minor(c.rdev())) +
                               ") " + why);
  }
  std::vector<std::string> made;
  auto status = make_parents(path, &made);
  if (!status.ok()) {
    remove_parents(made);
    return std::move(status).error().wrap(what);
  }
  // Where the path is taken again, a hidden name beside it (as CRIU does):
  // /proc then shows that name.
  std::string at = path;
  int made_node = make_node(at, c);
  if (made_node < 0 && errno == EEXIST) {
    at = path.substr(0, path.rfind('/') + 1) + ".cryo-ghost-" + std::to_string(c.id()) + "-" + std::to_string(::getpid());
    log::warn(what + ": the path is taken, made as " + at);
    made_node = make_node(at, c);
  }
  if (made_node < 0) {
    int err = errno;
    remove_parents(made);
    return Error(err, what + ": make it again at " + at);
  }
  UniqueFd fd(::open(at.c_str(), (type == S_IFDIR ? O_RDONLY | O_DIRECTORY : O_PATH) | O_NOFOLLOW | O_CLOEXEC));
  int err = fd.valid() ? 0 : errno;
  if (!err && (::lchown(at.c_str(), c.uid(), c.gid()) < 0 || ::fchmodat(AT_FDCWD, at.c_str(), c.mode() & 07777, 0) < 0))
    err = errno;
  int removed = type == S_IFDIR ? ::rmdir(at.c_str()) : ::unlink(at.c_str());
  if (!err && removed < 0) err = errno;
  remove_parents(made);
  if (err) return Error(err, what + ": open it, give it its owner and mode, and remove it again");
  return fd;
}

}  // namespace cryo::files
