#include "oci/rootfs.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "core/cgroup/cgroup.h"
#include "core/files/mounts.h"
#include "core/sys/io.h"
#include "oci/copy_tree.h"
#include "oci/path.h"

namespace cryo::oci {
namespace {

// Once bind_rootfs has run, the working directory is the root of the container's
// rootfs mount and every path inside it is built from here: a root mapped to
// another uid need not be allowed to search the host directories above it.
const std::string kRoot = ".";

struct FlagOption {
  bool clear;
  unsigned long flag;
};

const std::map<std::string, FlagOption>& flag_options() {
  static const std::map<std::string, FlagOption> kOptions = {
      {"ro", {false, MS_RDONLY}},         {"rw", {true, MS_RDONLY}},           {"nosuid", {false, MS_NOSUID}},
      {"suid", {true, MS_NOSUID}},        {"nodev", {false, MS_NODEV}},        {"dev", {true, MS_NODEV}},
      {"noexec", {false, MS_NOEXEC}},     {"exec", {true, MS_NOEXEC}},         {"sync", {false, MS_SYNCHRONOUS}},
      {"async", {true, MS_SYNCHRONOUS}},  {"dirsync", {false, MS_DIRSYNC}},    {"remount", {false, MS_REMOUNT}},
      {"mand", {false, MS_MANDLOCK}},     {"nomand", {true, MS_MANDLOCK}},     {"atime", {true, MS_NOATIME}},
      {"noatime", {false, MS_NOATIME}},   {"diratime", {true, MS_NODIRATIME}}, {"nodiratime", {false, MS_NODIRATIME}},
      {"relatime", {false, MS_RELATIME}}, {"norelatime", {true, MS_RELATIME}}, {"strictatime", {false, MS_STRICTATIME}},
      {"nostrictatime", {true, MS_STRICTATIME}}, {"defaults", {false, 0}}};
  return kOptions;
}

Status do_mount(const std::string& source, const std::string& target, const std::string& type, unsigned long flags,
                const std::string& data) {
  if (::mount(source.empty() ? nullptr : source.c_str(), target.c_str(), type.empty() ? nullptr : type.c_str(), flags,
              data.empty() ? nullptr : data.c_str()) < 0)
    return errno_error("mount " + (source.empty() ? type : source) + " on " + target);
  return {};
}

Status mkdir_all(const std::string& path, mode_t mode = 0755) {
  std::string current;
  size_t pos = 0;
  while (pos < path.size()) {
    size_t next = path.find('/', pos + 1);
    if (next == std::string::npos) next = path.size();
    current = path.substr(0, next);
    if (!current.empty() && ::mkdir(current.c_str(), mode) < 0 && errno != EEXIST)
      return errno_error("mkdir " + current);
    pos = next;
  }
  return {};
}

}  // namespace

Status make_mount_point(const std::string& target, bool file) {
  struct stat st;
  if (::lstat(target.c_str(), &st) == 0) return {};
  if (!file) return mkdir_all(target);
  CRYO_TRY(mkdir_all(target.substr(0, target.rfind('/'))));
  CRYO_ASSIGN(UniqueFd fd, open_file(target, O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
  return {};
}

namespace {

// Flags of an existing mount that an unprivileged remount must keep (the kernel locks them).
unsigned long locked_flags(const std::string& path) {
  struct statvfs vfs;
  if (::statvfs(path.c_str(), &vfs) < 0) return 0;
  unsigned long out = 0;
  if (vfs.f_flag & ST_NOSUID) out |= MS_NOSUID;
  if (vfs.f_flag & ST_NODEV) out |= MS_NODEV;
  if (vfs.f_flag & ST_NOEXEC) out |= MS_NOEXEC;
  if (vfs.f_flag & ST_RDONLY) out |= MS_RDONLY;
  return out;
}

Status mount_cgroup(const RootfsContext& ctx, const std::string& target, const MountFlags& mf) {
  CRYO_ASSIGN(auto hierarchies, cgroup::host_hierarchies());
  if (cgroup::mode_of(hierarchies) == cgroup::Mode::kUnified) {
    unsigned long flags = mf.flags & ~MS_RDONLY;
    if (ctx.new_cgroup_ns) return do_mount("cgroup2", target, "cgroup2", mf.flags, "");
    CRYO_TRY(do_mount(hierarchies[0].mount_point + ctx.cgroup_path, target, "", MS_BIND | MS_REC, ""));
    return do_mount("", target, "", MS_BIND | MS_REMOUNT | flags | (mf.flags & MS_RDONLY) | locked_flags(target), "");
  }
  // v1: a tmpfs holding one directory per hierarchy, each the container's own group. As with runc,
  // the tmpfs itself stays writable and the mount's flags ("ro", "nosuid"...) go to the hierarchies.
  CRYO_TRY(do_mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755"));
  for (auto& h : hierarchies) {
    std::string name = h.v2 ? "unified" : h.mount_point.substr(h.mount_point.rfind('/') + 1);
    std::string sub = target + "/" + name;
    CRYO_TRY(mkdir_all(sub));
    if (ctx.new_cgroup_ns) {
      std::string opts;
      for (auto& c : h.controllers) opts += (opts.empty() ? "" : ",") + c;
      CRYO_TRY(do_mount("cgroup", sub, h.v2 ? "cgroup2" : "cgroup", mf.flags, opts));
    } else {
      CRYO_TRY(do_mount(h.mount_point + ctx.cgroup_path, sub, "", MS_BIND | MS_REC, ""));
      unsigned long wanted = mf.flags & ~(MS_REMOUNT | MS_BIND | MS_REC);
      if (wanted != 0) CRYO_TRY(do_mount("", sub, "", MS_BIND | MS_REMOUNT | wanted | locked_flags(sub), ""));
    }
  }
  return {};
}

Status mount_one(const RootfsContext& ctx, const Mount& m) {
  CRYO_ASSIGN(MountFlags mf, parse_mount_options(m.options));
  // The image owns the rootfs: a symlink in it must not point a mount at the host.
  CRYO_ASSIGN(std::string target, secure_join(kRoot, m.destination));
  bool bind = mf.bind || m.type == "bind";
  if (m.type == "cgroup" || m.type == "cgroup2") {
    CRYO_TRY(make_mount_point(target, false));
    return mount_cgroup(ctx, target, mf).wrap("cgroup mount on " + m.destination);
  }
  if (bind) {
    struct stat st;
    if (::stat(m.source.c_str(), &st) < 0) return errno_error("bind mount source " + m.source);
    CRYO_TRY(make_mount_point(target, !S_ISDIR(st.st_mode)));
    CRYO_TRY(do_mount(m.source, target, "", MS_BIND | (mf.recursive ? MS_REC : 0), ""));
    unsigned long wanted = mf.flags & ~(MS_REMOUNT | MS_BIND | MS_REC);
    if (wanted != 0) {
      unsigned long flags = (locked_flags(target) & ~mf.clear) | wanted;
      CRYO_TRY(do_mount("", target, "", MS_BIND | MS_REMOUNT | flags, ""));
    }
  } else {
    CRYO_TRY(make_mount_point(target, false));
    std::string type = m.type.empty() ? m.source : m.type;
    if (mf.tmpcopyup && type != "tmpfs") return Error(EINVAL, "tmpcopyup needs a tmpfs mount");
    UniqueFd lower;
    if (mf.tmpcopyup) {
      lower = UniqueFd(::open(target.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!lower) return errno_error("open " + target + " for tmpcopyup");
    }
    if (mf.tmpcopyup) {
      // Mounted writable first so that the copy can fill it; read-only comes after.
      CRYO_TRY(do_mount(m.source, target, type, mf.flags & ~MS_RDONLY, mf.data));
      CRYO_TRY(copy_tree(lower.get(), target).wrap("tmpcopyup"));
      if (mf.flags & MS_RDONLY) CRYO_TRY(do_mount("", target, "", MS_REMOUNT | mf.flags, mf.data));
    } else if (type == "mqueue" || type == "devpts" || type == "proc" || type == "sysfs" || type == "tmpfs") {
      auto status = do_mount(m.source, target, type, mf.flags, mf.data);
      // sysfs of a network namespace owned by another user namespace: bind the host's instead.
      if (!status.ok() && type == "sysfs" && status.error().code() == EPERM && ctx.in_user_ns)
        status = do_mount("/sys", target, "", MS_BIND | MS_REC, "");
      CRYO_TRY(std::move(status));
    } else {
      CRYO_TRY(do_mount(m.source, target, type, mf.flags, mf.data));
    }
  }
  if (mf.propagation) CRYO_TRY(do_mount("", target, "", mf.propagation, ""));
  return {};
}

struct DefaultDevice {
  const char* path;
  unsigned major, minor;
};
const DefaultDevice kDefaultDevices[] = {{"/dev/null", 1, 3},    {"/dev/zero", 1, 5},    {"/dev/full", 1, 7},
                                         {"/dev/random", 1, 8},  {"/dev/urandom", 1, 9}, {"/dev/tty", 5, 0}};

Status create_device(const std::string& rootfs, const Device& d, bool in_user_ns) {
  CRYO_ASSIGN(std::string target, secure_join(rootfs, d.path));
  CRYO_TRY(mkdir_all(target.substr(0, target.rfind('/'))));
  if (in_user_ns) {
    // mknod is not allowed in a user namespace: bind the host's node.
    CRYO_TRY(make_mount_point(target, true));
    return do_mount(d.path, target, "", MS_BIND, "");
  }
  mode_t type = d.type == "b" ? S_IFBLK : d.type == "p" ? S_IFIFO : S_IFCHR;
  ::unlink(target.c_str());
  if (::mknod(target.c_str(), type | (d.file_mode.value_or(0666) & 07777),
              makedev(static_cast<unsigned>(d.major), static_cast<unsigned>(d.minor))) < 0)
    return errno_error("mknod " + d.path);
  if (::chmod(target.c_str(), d.file_mode.value_or(0666) & 07777) < 0) return errno_error("chmod " + d.path);
  if ((d.uid || d.gid) && ::chown(target.c_str(), d.uid.value_or(0), d.gid.value_or(0)) < 0)
    return errno_error("chown " + d.path);
  return {};
}

}  // namespace

Result<unsigned long> parse_propagation(const std::string& name) {
  if (name == "private") return MS_PRIVATE;
  if (name == "rprivate") return MS_PRIVATE | MS_REC;
  if (name == "shared") return MS_SHARED;
  if (name == "rshared") return MS_SHARED | MS_REC;
  if (name == "slave") return MS_SLAVE;
  if (name == "rslave") return MS_SLAVE | MS_REC;
  if (name == "unbindable") return MS_UNBINDABLE;
  if (name == "runbindable") return MS_UNBINDABLE | MS_REC;
  return Error(EINVAL, "unknown mount propagation '" + name + "'");
}

Result<MountFlags> parse_mount_options(const std::vector<std::string>& options) {
  MountFlags out;
  for (auto& o : options) {
    if (auto it = flag_options().find(o); it != flag_options().end()) {
      if (it->second.clear) {
        out.flags &= ~it->second.flag;
        out.clear |= it->second.flag;
      } else {
        out.flags |= it->second.flag;
      }
    } else if (o == "bind" || o == "rbind") {
      out.bind = true;
      out.recursive = out.recursive || o == "rbind";
    } else if (auto prop = parse_propagation(o); prop.ok()) {
      out.propagation = *prop;
    } else if (o == "tmpcopyup") {
      out.tmpcopyup = true;
    } else if (o == "idmap" || o == "ridmap" || o == "copy-symlink") {
      return Error(EINVAL, "mount option '" + o + "' is not supported by cryo");
    } else {
      out.data += (out.data.empty() ? "" : ",") + o;
    }
  }
  return out;
}

// pivot_root refuses a shared parent of the new root (rootfsPropagation "shared"
// leaves it so): the mount holding the rootfs directory becomes private, as runc does.
Status make_rootfs_parent_private() {
  struct statx sx;
  if (::statx(AT_FDCWD, ".", 0, STATX_MNT_ID, &sx) < 0 || !(sx.stx_mask & STATX_MNT_ID)) return errno_error("statx of the rootfs");
  CRYO_ASSIGN(std::string mountinfo, read_file("/proc/self/mountinfo"));
  for (const auto& m : files::parse_mountinfo(mountinfo)) {
    if (m.id != sx.stx_mnt_id) continue;
    bool shared = std::any_of(m.tags.begin(), m.tags.end(), [](const std::string& t) { return t.starts_with("shared:"); });
    if (!shared) return {};
    return do_mount("", m.mount_point, "", MS_PRIVATE, "").wrap("making the rootfs's parent mount private");
  }
  return {};
}

// Binds the rootfs (the working directory, entered by stage A before it left the
// host's user namespace) onto itself and moves into the new mount. The clone is
// taken through the working directory, not the rootfs path, so no directory
// above the rootfs is looked up again.
Status bind_rootfs() {
  UniqueFd tree(::open_tree(AT_FDCWD, ".", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE));
  if (!tree) return errno_error("open_tree of the rootfs");
  if (::move_mount(tree.get(), "", AT_FDCWD, ".", MOVE_MOUNT_F_EMPTY_PATH) < 0) return errno_error("move_mount of the rootfs");
  if (::fchdir(tree.get()) < 0) return errno_error("entering the rootfs mount");
  return {};
}

Status prepare_rootfs(const RootfsContext& ctx) {
  const Spec& spec = *ctx.spec;
  unsigned long propagation = MS_SLAVE | MS_REC;
  if (!spec.rootfs_propagation.empty()) {
    CRYO_ASSIGN(propagation, parse_propagation(spec.rootfs_propagation));
  }
  CRYO_TRY(do_mount("", "/", "", propagation, "").wrap("rootfsPropagation"));
  CRYO_TRY(make_rootfs_parent_private());
  CRYO_TRY(bind_rootfs().wrap("binding the rootfs " + spec.root_path));
  for (auto& m : spec.mounts) CRYO_TRY(mount_one(ctx, m).wrap("mount " + m.destination));
  bool dev_is_tmpfs = false;
  for (auto& m : spec.mounts) dev_is_tmpfs = dev_is_tmpfs || (m.destination == "/dev");
  if (dev_is_tmpfs) {
    for (auto& d : kDefaultDevices) {
      bool overridden = false;
      for (auto& dev : spec.devices) overridden = overridden || dev.path == d.path;
      if (!overridden) CRYO_TRY(create_device(kRoot, Device{d.path, "c", d.major, d.minor, 0666, 0, 0}, ctx.in_user_ns));
    }
  }
  for (auto& d : spec.devices) CRYO_TRY(create_device(kRoot, d, ctx.in_user_ns).wrap("linux.devices"));
  return {};
}

Status enter_rootfs(bool no_pivot) {
  if (no_pivot) {
    CRYO_TRY(do_mount(kRoot, "/", "", MS_MOVE, ""));
    if (::chroot(".") < 0) return errno_error("chroot");
  } else {
    if (::syscall(SYS_pivot_root, ".", ".") < 0) return errno_error("pivot_root into the rootfs");
    // The old root now sits under the new one: hide it from the host's mount events, then drop it.
    CRYO_TRY(do_mount("", ".", "", MS_SLAVE | MS_REC, ""));
    if (::umount2(".", MNT_DETACH) < 0) return errno_error("unmount the old root");
  }
  if (::chdir("/") < 0) return errno_error("chdir /");
  return {};
}

Status finish_rootfs(const RootfsContext& ctx) {
  const Spec& spec = *ctx.spec;
  struct Link {
    const char* from;
    const char* to;
  };
  struct stat st;
  if (::stat("/dev", &st) == 0) {
    for (Link l : {Link{"/proc/self/fd", "/dev/fd"}, Link{"/proc/self/fd/0", "/dev/stdin"},
                   Link{"/proc/self/fd/1", "/dev/stdout"}, Link{"/proc/self/fd/2", "/dev/stderr"}})
      if (::symlink(l.from, l.to) < 0 && errno != EEXIST) return errno_error(std::string("symlink ") + l.to);
    if (::stat("/dev/pts/ptmx", &st) == 0) {
      ::unlink("/dev/ptmx");
      if (::symlink("pts/ptmx", "/dev/ptmx") < 0) return errno_error("symlink /dev/ptmx");
    }
  }
  for (auto& path : spec.masked_paths) {
    if (::stat(path.c_str(), &st) < 0) continue;
    if (S_ISDIR(st.st_mode)) CRYO_TRY(do_mount("tmpfs", path, "tmpfs", MS_RDONLY, "").wrap("maskedPaths"));
    else CRYO_TRY(do_mount("/dev/null", path, "", MS_BIND, "").wrap("maskedPaths"));
  }
  for (auto& path : spec.readonly_paths) {
    if (::stat(path.c_str(), &st) < 0) continue;
    CRYO_TRY(do_mount(path, path, "", MS_BIND | MS_REC, "").wrap("readonlyPaths"));
    CRYO_TRY(do_mount("", path, "", MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags(path), "").wrap("readonlyPaths"));
  }
  if (spec.root_readonly)
    CRYO_TRY(do_mount("", "/", "", MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags("/"), "").wrap("read-only root"));
  return {};
}

}  // namespace cryo::oci
