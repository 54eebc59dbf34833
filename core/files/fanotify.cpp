#include "core/files/fanotify.h"

#include <fcntl.h>
#include <sys/fanotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <charconv>
#include <cstring>

#include "core/files/ghosts.h"
#include "core/files/mounts.h"
#include "core/sys/io.h"
#include "core/sys/proc.h"

namespace cryo::files {
namespace {

using Mark = image::Fanotify::Mark;

// Mark flags as fdinfo shows them and fanotify_mark takes them.
constexpr uint32_t kIgnoredMask = 0x20, kIgnoredSurvModify = 0x40, kEvictable = 0x200, kIgnore = 0x400;
constexpr uint32_t kKnownMflags = kIgnoredSurvModify | kEvictable | kIgnore;
constexpr uint32_t kMarkMount = 0x10, kMarkFilesystem = 0x100;

template <typename T>
bool hex_value(std::string_view s, T& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out, 16);
  return ec == std::errc() && end == s.data() + s.size() && !s.empty();
}

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) i++;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') j++;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

std::string hex(uint64_t v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%lx", static_cast<unsigned long>(v));
  return buf;
}

std::string describe(const Mark& m) {
  switch (m.kind()) {
    case Mark::MOUNT: return "fanotify mark on mount " + m.path();
    case Mark::FILESYSTEM: return "fanotify mark on the filesystem of " + m.path();
    default: return "fanotify mark on inode " + std::to_string(m.ino());
  }
}

// The marked inode, opened O_PATH by its handle under a mount of its
// filesystem (a directory fd: open_by_handle_at takes no O_PATH one).
Result<UniqueFd> open_marked_inode(int mount_fd, int handle_type, const std::string& handle) {
  std::vector<uint8_t> buf(sizeof(struct file_handle) + handle.size());
  auto* h = reinterpret_cast<struct file_handle*>(buf.data());
  h->handle_bytes = static_cast<unsigned>(handle.size());
  h->handle_type = handle_type;
  std::memcpy(h->f_handle, handle.data(), handle.size());
  UniqueFd file(::open_by_handle_at(mount_fd, h, O_PATH | O_CLOEXEC));
  if (!file.valid()) return errno_error("open the marked file by its handle");
  return file;
}

}  // namespace

Result<FanotifyInfo> parse_fanotify_fdinfo(std::string_view text) {
  FanotifyInfo info;
  bool header = false;
  for (std::string_view line : proc::split_lines(text)) {
    if (!line.starts_with("fanotify ")) continue;
    auto fields = words(line.substr(9));
    auto bad = [&] { return Error(EINVAL, "bad fanotify fdinfo line '" + std::string(line) + "'"); };
    if (!fields.empty() && fields[0].starts_with("flags:")) {
      for (auto f : fields) {
        if (f.starts_with("flags:") && !hex_value(f.substr(6), info.flags)) return bad();
        if (f.starts_with("event-flags:") && !hex_value(f.substr(12), info.event_f_flags)) return bad();
      }
      header = true;
      continue;
    }
    FanotifyInfo::Mark m;
    bool has_ino = false, has_mnt = false, has_sdev = false, has_mask = false;
    uint32_t handle_bytes = 0;
    std::string_view handle_hex;
    for (auto f : fields) {
      size_t colon = f.find(':');
      if (colon == std::string_view::npos) return bad();
      std::string_view key = f.substr(0, colon), value = f.substr(colon + 1);
      bool ok = true;
      if (key == "ino") ok = has_ino = hex_value(value, m.ino);
      else if (key == "sdev") ok = has_sdev = hex_value(value, m.sdev);
      else if (key == "mnt_id") ok = has_mnt = hex_value(value, m.mnt_id);
      else if (key == "mflags") ok = hex_value(value, m.mflags);
      else if (key == "mask") ok = has_mask = hex_value(value, m.mask);
      else if (key == "ignored_mask") ok = hex_value(value, m.ignored_mask);
      else if (key == "fhandle-bytes") ok = hex_value(value, handle_bytes);
      else if (key == "fhandle-type") ok = hex_value(value, m.handle_type);
      else if (key == "f_handle") handle_hex = value;
      else
        return Error(EINVAL, "a fanotify mark cryo does not know: '" + std::string(line) + "'");
      if (!ok) return bad();
    }
    if (!has_mask || (has_ino && !has_sdev)) return bad();
    if (has_ino) {
      m.kind = Mark::INODE;
      if (handle_bytes == 0 || handle_bytes > 128 || handle_hex.size() != 2 * handle_bytes) return bad();
      for (size_t i = 0; i < handle_bytes; i++) {
        uint8_t byte = 0;
        if (!hex_value(handle_hex.substr(2 * i, 2), byte)) return bad();
        m.handle.push_back(static_cast<char>(byte));
      }
    } else if (has_mnt) {
      m.kind = Mark::MOUNT;
    } else if (has_sdev) {
      m.kind = Mark::FILESYSTEM;
    } else {
      return Error(EINVAL, "a fanotify mark cryo does not know: '" + std::string(line) + "'");
    }
    info.marks.push_back(std::move(m));
  }
  if (!header) return Error(EINVAL, "no fanotify flags in its fdinfo");
  return info;
}

Status dump_fanotify(pid_t pid, int copy, std::string_view text, const std::string& tree_root,
                     image::Fanotify* out) {
  int queued = 0;
  if (::ioctl(copy, FIONREAD, &queued) < 0) return errno_error("FIONREAD");
  if (queued > 0)
    return Error("fanotify has " + std::to_string(queued) + " bytes of events not yet read (not supported: dump "
                 "again once it has read them)");
  CRYO_ASSIGN(FanotifyInfo info, parse_fanotify_fdinfo(text));
  out->set_flags(info.flags);
  out->set_event_f_flags(info.event_f_flags);
  std::string mountinfo;
  for (const auto& m : info.marks) {
    if (m.mflags & ~kKnownMflags) return Error("fanotify mark with unknown flags " + hex(m.mflags));
    auto* mark = out->add_marks();
    mark->set_kind(m.kind);
    mark->set_mflags(m.mflags);
    mark->set_mask(m.mask);
    mark->set_ignored_mask(m.ignored_mask);
    struct stat st;
    if (m.kind == Mark::MOUNT) {
      if (mountinfo.empty()) {
        CRYO_ASSIGN(mountinfo, read_file("/proc/" + std::to_string(pid) + "/mountinfo"));
      }
      std::string point = mount_of_id(mountinfo, m.mnt_id);
      if (point.empty()) return Error("fanotify mark on mount " + std::to_string(m.mnt_id) + ", which it cannot see");
      if (::stat((tree_root + point).c_str(), &st) < 0) return errno_error("stat " + point);
      mark->set_path(point);
      mark->set_dev(st.st_dev);
      mark->set_made_again(tree_mount_of_dev(kernel_dev(st.st_dev), tree_root).made_again);
      continue;
    }
    auto seen = tree_mount_of_dev(m.sdev, tree_root);
    std::vector<std::string>& mounts = seen.mount_points;
    mark->set_made_again(seen.made_again);
    std::string mount = mounts.empty() ? "" : mounts.front();
    if (mount.empty())
      return Error("fanotify mark on a filesystem (dev " + std::to_string(m.sdev >> 20) + ":" +
                   std::to_string(m.sdev & 0xfffff) + ") with no mount visible");
    mark->set_path(mount);
    if (m.kind == Mark::FILESYSTEM) {
      if (::stat((tree_root + mount).c_str(), &st) < 0) return errno_error("stat " + mount);
      mark->set_dev(st.st_dev);
      continue;
    }
    mark->set_ino(m.ino);
    CRYO_ASSIGN(UniqueFd mount_fd, open_file(tree_root + mount, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    CRYO_ASSIGN(UniqueFd file, open_marked_inode(mount_fd.get(), m.handle_type, m.handle).wrap(describe(*mark)));
    if (::fstat(file.get(), &st) < 0) return errno_error("fstat the marked file");
    if (st.st_ino != m.ino) return Error("fanotify mark on inode " + std::to_string(m.ino) + ": its handle opens another");
    mark->set_dev(st.st_dev);
    mark->set_mode(st.st_mode);
    mark->set_handle_type(m.handle_type);
    mark->set_handle(m.handle);
    if (mark->made_again()) {
      // Its inode will be new: found again by the path the tree sees (that of
      // the fd opened under a mount that shows it, outside cryo's mount
      // namespace), which must lead to it now.
      std::string tried;
      for (const auto& under : mounts) {
        CRYO_ASSIGN(UniqueFd under_fd, open_file(tree_root + under, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        CRYO_ASSIGN(UniqueFd again, open_marked_inode(under_fd.get(), m.handle_type, m.handle).wrap(describe(*mark)));
        CRYO_ASSIGN(std::string path, read_link("/proc/self/fd/" + std::to_string(again.get())));
        struct stat by_path;
        if (!path.empty() && path[0] == '/' && ::lstat((tree_root + path).c_str(), &by_path) == 0 &&
            by_path.st_ino == st.st_ino && by_path.st_dev == st.st_dev) {
          mark->set_inode_path(path);
          break;
        }
        tried += (tried.empty() ? "" : ", ") + path;
      }
      if (mark->inode_path().empty()) return Error(describe(*mark) + ": it cannot be reached by its path (" + tried + ")");
    }
  }
  return {};
}

Result<UniqueFd> open_fanotify(const image::Fanotify& group, int root) {
  UniqueFd fd(::fanotify_init(group.flags() | FAN_CLOEXEC, group.event_f_flags()));
  if (!fd.valid())
    return errno_error("fanotify_init flags " + hex(group.flags()) + " event flags " + hex(group.event_f_flags()));
  // fdinfo lists the newest mark first: the oldest is added first again.
  for (auto it = group.marks().rbegin(); it != group.marks().rend(); ++it) {
    const Mark& m = *it;
    std::string what = describe(m);
    if (m.mflags() & ~kKnownMflags) return Error(EINVAL, what + ": unknown flags");
    if (m.path().empty() || m.path()[0] != '/') return Error(EINVAL, what + ": not an absolute path");
    UniqueFd target;
    uint32_t where = 0;
    struct stat st;
    if (m.kind() == Mark::INODE && m.made_again()) {
      if (m.inode_path().empty() || m.inode_path()[0] != '/') return Error(EINVAL, what + ": not an absolute path");
      CRYO_ASSIGN(target, open_in_root(root, m.inode_path(), O_PATH | O_NOFOLLOW).wrap(what));
      if (::fstat(target.get(), &st) < 0) return errno_error(what + ": fstat");
      if ((st.st_mode & S_IFMT) != (m.mode() & S_IFMT))
        return Error(EINVAL, what + ": " + m.inode_path() + " is another kind of file now");
    } else if (m.kind() == Mark::INODE) {
      if (m.handle().empty() || m.handle().size() > 128) return Error(EINVAL, what + ": bad file handle");
      CRYO_ASSIGN(UniqueFd mount_fd, open_in_root(root, m.path(), O_RDONLY | O_DIRECTORY).wrap(what));
      CRYO_ASSIGN(target, open_marked_inode(mount_fd.get(), m.handle_type(), m.handle()).wrap(what));
      if (::fstat(target.get(), &st) < 0) return errno_error(what + ": fstat");
      if (st.st_ino != m.ino()) return Error(EINVAL, what + ": its handle opens another file now");
    } else {
      CRYO_ASSIGN(target, open_in_root(root, m.path(), O_PATH).wrap(what));
      if (::fstat(target.get(), &st) < 0) return errno_error(what + ": fstat");
      where = m.kind() == Mark::MOUNT ? kMarkMount : kMarkFilesystem;
    }
    if (!m.made_again() && st.st_dev != m.dev()) return Error(EINVAL, what + ": another filesystem is there now");
    // fanotify_mark takes no O_PATH fd, but a path through one.
    std::string through = "/proc/self/fd/" + std::to_string(target.get());
    uint32_t flags = where | (m.mflags() & kEvictable);
    if (m.mask() != 0 && ::fanotify_mark(fd.get(), FAN_MARK_ADD | flags, m.mask(), AT_FDCWD, through.c_str()) < 0)
      return errno_error(what + ": fanotify_mark mask " + hex(m.mask()));
    if (m.ignored_mask() != 0) {
      // FAN_MARK_IGNORE (Linux 6.0) and the older FAN_MARK_IGNORED_MASK differ in what the mask may hold.
      flags |= ((m.mflags() & kIgnore) ? kIgnore : kIgnoredMask) | (m.mflags() & kIgnoredSurvModify);
      if (::fanotify_mark(fd.get(), FAN_MARK_ADD | flags, m.ignored_mask(), AT_FDCWD, through.c_str()) < 0)
        return errno_error(what + ": fanotify_mark ignored mask " + hex(m.ignored_mask()));
    }
  }
  return fd;
}

}  // namespace cryo::files
