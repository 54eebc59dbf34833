// The restore's first stage: the process tree itself, as stub processes
// forked from the restorer with the recorded PIDs (clone3 with set_tid), in
// the recorded shape, sessions and process groups, each with its fd table,
// cwd, root and umask set. Stubs then wait to be seized for the rest.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "core/files/files_restore.h"
#include "core/image/image.h"
#include "core/image/proto/mm.pb.h"
#include "core/image/proto/task.pb.h"
#include "core/mm/premap.h"
#include "core/image/proto/tree.pb.h"
#include "core/sys/result.h"

namespace cryo::tree {

struct StubTask {
  const image::TaskEntry* entry = nullptr;
  const image::Process* core = nullptr;  // null for a zombie
  std::vector<size_t> children;          // indexes into StubPlan::tasks
  bool join_group_later = false;         // its group must be joined once all exist
  std::vector<pid_t> group_stand_ins;    // groups whose leader exited, made by stand-in children
};

struct StubPlan {
  std::vector<StubTask> tasks;  // the root first
  const files::FileObjects* objects = nullptr;
  // Memory shared copy-on-write with children: each stub builds its
  // regions before it forks its children (see core/mm/premap.h).
  const mm::Premaps* premaps = nullptr;
  const std::map<pid_t, image::Mm>* mms = nullptr;
  const image::ImageDirReader* images = nullptr;
  const image::Files* files = nullptr;
  files::FdZone fd_zone;  // the restorer's fds (fd_zone.h)
  int status_fd = -1;   // stubs report here
  int go_read_fd = -1;  // closes (EOF) when zombies may exit
  int go_write_fd = -1;
  // A daemon's session (and group) whose leader has exited: a stand-in with
  // that pid calls setsid() and forks the root; it is killed once the
  // restore is done (0: none).
  pid_t session_stand_in = 0;
  // Stand-ins for groups whose leader exited: {the stub that forks it, its pid}.
  std::vector<std::pair<pid_t, pid_t>> group_stand_ins;
  // The tree's own UTS namespace: the root makes it before forking the rest.
  const image::Uts* uts = nullptr;
  // The tree's own IPC namespace: the root makes it and every object in it
  // before forking the rest.
  const image::IpcNamespace* ipc = nullptr;
  // The tree's own time namespace: the root makes and enters it before forking.
  const image::TimeNs* time_ns = nullptr;
  // The tree's own cgroup namespace: the root, forked inside its roots,
  // unshares it before forking.
  bool cgroup_ns = false;
  // The root is the init of a new pid namespace, where every other stub is
  // made with its pid (clone3's set_tid counts from the innermost level).
  bool own_pid_ns = false;
  // restore --new-pidns: cryo's own init is pid 1 of a new pid namespace and
  // forks the tree there at its recorded pids. It exits as the root does,
  // and, until a byte arrives on init_life_fd, at EOF there (the restorer died).
  bool cryo_init = false;
  // The tree's own mount namespace, made by a holder (ns::MountHolder): the
  // root joins it and mounts what belongs to its other namespaces, after
  // making those and before forking the rest.
  const image::MountNs* mount_ns = nullptr;
  // The tree's own network namespace, made by the restorer (its sockets are
  // in it): the root joins it first.
  int net_ns_fd = -1;
  // The tree's own user namespace (ns::UserNsMaker): the root joins it
  // before anything else (or is cloned in it, as the init of the tree's pid
  // namespace), and makes its other namespaces inside it.
  const image::UserNs* user_ns = nullptr;
  int user_ns_fd = -1;
  int mount_ns_fd = -1;
  int init_life_fd = -1;
  int init_life_write_fd = -1;  // the restorer's end: closed in the init
};

// Builds the plan: children lists and which groups are joined later.
// shell_job: a session or group from outside the tree is cryo restore's own.
Result<StubPlan> plan_stubs(const image::Tree& tree, const std::vector<const image::Process*>& cores,
                            bool shell_job);

// Forks the root stub (which forks the rest), through the session stand-in
// when there is one; returns the root's pid (with cryo_init, the init's).
Result<pid_t> spawn_stubs(const StubPlan& plan);

// Collects one report per stub from the status pipe; fails with the first error.
Status wait_for_stubs(const StubPlan& plan, pid_t root, int timeout_ms);

}  // namespace cryo::tree
