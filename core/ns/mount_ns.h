// The tree's mount namespace.
//
// A tree whose root has a mount namespace of its own (a container, or
// `unshare --mount` with a pivot_root) is saved with its whole mount table,
// and every path of the image is one the tree sees in it. The restore makes
// the namespace again in three steps:
//   - a holder process (MountHolder) unshares a mount namespace, binds the new
//     root directory (restore --root, by default where the root was at dump
//     time), mounts on it every bind of a host path and every filesystem made
//     fresh (tmpfs with its files, devpts), and pivots into it;
//   - cryo opens the tree's files through the holder's root;
//   - the tree's root process joins that namespace and mounts what belongs to
//     its other namespaces (proc, sysfs, mqueue, cgroup) once it has made
//     them (finish_in_root_task), before it forks the rest of the tree.
// A tree with a user namespace of its own (a rootless container) has its
// mount namespace owned by it: the holder joins the user namespace before it
// unshares, and makes the mounts as the namespace's root, as the container
// did. The kernel lets a user namespace mount a proc or a sysfs only where a
// fully visible one is in its mount namespace (mount_too_revealing): the
// tree's root makes them detached (fsmount) in a copy of cryo's namespace,
// where the host's are, and moves them into place once it has joined.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "core/files/external.h"
#include "core/image/proto/files.pb.h"
#include "core/image/proto/task.pb.h"
#include "core/image/proto/tree.pb.h"
#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::ns {


// The mount table of pid's namespace. Refuses a mount it cannot make again,
// naming it. externals: mount points named external (--external
// mnt[MOUNT_POINT]:KEY): saved as binds the restore is given. Unless
// must_exist is false (CRIU RPC's ext_mnt, a map consulted for each mount),
// a point that is no mount fails the dump.
Status dump_mount_ns(pid_t root, image::MountNs* out, const std::map<std::string, std::string>& externals = {},
                     bool must_exist = true);

// The external mounts' sources, from --external mnt[KEY]:PATH (a key may also
// be a mount point); fails naming an external mount left without one, or a
// key that names none (unless must_exist is false, as for dump_mount_ns).
Status map_external_mounts(image::MountNs* ns, const std::map<std::string, std::string>& given, bool must_exist = true);

// Binds of a pty of the tree's own devpts (a container's /dev/console) whose
// terminal --inherit-fd hands over: that terminal is bound there.
Status map_terminal_mounts(image::MountNs* ns, const std::vector<files::InheritFd>& given);

// --cgroup-root moved the tree's cgroups: a bind of one of the root process's
// recorded cgroups, or of one below it (how a runtime gives a container its
// cgroup without a cgroup namespace), binds the moved one instead, which
// must exist by the time the mounts are made (a runtime makes it first).
// moves: by hierarchy, as cgroup::root_moves gives them.
Status move_cgroup_binds(image::MountNs* ns, const std::map<std::string, std::pair<std::string, std::string>>& moves);

// Files the restore cannot yet make again inside a mount namespace of the
// tree's own (they are made by path from cryo's side: FIFOs, unix sockets
// bound to a path, deleted files, inotify and fanotify marks, terminals).
Status check_files_in_mount_ns(const std::map<pid_t, image::Process>& cores, const image::Files& files);

class MountHolder {
 public:
  MountHolder() = default;
  MountHolder(MountHolder&& other) noexcept;
  MountHolder& operator=(MountHolder&& other) noexcept;
  ~MountHolder();  // kills and reaps the holder

  // root_dir: the directory that becomes the namespace's root. user_ns,
  // user_fd: the tree's user namespace, which owns the mount namespace
  // (nullptr, -1: cryo's).
  static Result<MountHolder> build(const image::MountNs& ns, const std::string& root_dir,
                                   const image::UserNs* user_ns = nullptr, int user_fd = -1);

  pid_t pid() const { return pid_; }
  // The namespace's root, to open the tree's files in (O_PATH).
  int root_fd() const { return root_.get(); }
  // The namespace (/proc/H/ns/mnt), for the tree's root to join.
  int ns_fd() const { return ns_.get(); }

 private:
  pid_t pid_ = 0;
  UniqueFd root_, ns_;
};

// In the tree's root task, after it made its other namespaces: joins the
// mount namespace and mounts the filesystems bound to those namespaces.
// in_user_ns: the task is in the tree's own user namespace, which owns them.
Status finish_in_root_task(const image::MountNs& ns, int ns_fd, bool in_user_ns = false);

// Where the root was at dump time, if it is there still; "" if not known.
std::string default_root(const image::MountNs& ns);

}  // namespace cryo::ns
