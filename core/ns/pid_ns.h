// The tree's pid namespace.
//
// A tree whose root is the init of a pid namespace of its own (a container,
// `unshare --pid --fork`) is recorded with the pids its processes see, the
// only ones that mean anything after a restore into a fresh namespace. The
// dump works on it with cryo's own pids and maps every pid an image field
// holds when it writes the image. The restore needs no map: the tree's pids
// are made inside the new namespace, and the restorer works from inside it
// (see enter_for_restore).
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <vector>

#include "core/image/proto/files.pb.h"
#include "core/image/proto/task.pb.h"
#include "core/image/proto/tree.pb.h"
#include "core/sys/result.h"
#include "core/tree/freeze.h"

namespace cryo::ns {

class PidMap {
 public:
  // The identity when the root shares cryo's pid namespace. Otherwise the
  // root must be pid 1 of its namespace, and every process of the namespace
  // in the tree: one left out would be missing after a restore. Namespaces
  // nested inside the tree's are taken whole, with their inits, each task
  // with its pids at every level below the tree's.
  static Result<PidMap> of_tree(const tree::FrozenTree& tree);

  bool own() const { return own_; }
  // The pid a process or thread of cryo's namespace has inside the tree's;
  // 0 for one outside it (as the kernel shows it inside).
  pid_t inner(pid_t host) const;

  // Every pid an image field holds, from cryo's numbering to the tree's (and
  // the pids of tasks of nested namespaces, level by level).
  void translate(image::Tree* tree) const;
  void translate(image::Process* core) const;
  void translate(image::Files* files) const;

  // Files naming a /proc/PID path are refused: the tree shares cryo's /proc,
  // whose pids are not the tree's. cores: by pid in cryo's numbering.
  Status check_files(const std::map<pid_t, image::Process>& cores, const image::Files& files) const;

  // What a process of a nested namespace holds that its restore would set
  // in the wrong namespace (timers aimed at a thread, signal owners, a
  // terminal's session or group) is refused. cores: by cryo's pids.
  Status check_nested(const std::map<pid_t, image::Process>& cores, const image::Files& files) const;

 private:
  static Status check_nested_member(const tree::FrozenProcess& p, const std::vector<tree::FrozenProcess>& procs);

  bool own_ = false;
  std::map<pid_t, pid_t> inner_;  // host -> inner, every thread of the tree
  std::map<pid_t, std::vector<pid_t>> nested_;  // host -> ids below the tree's namespace, for a nested thread
  std::map<pid_t, pid_t> children_ns_;  // host -> its child whose pid namespace is its pid_for_children
};

// The restore of a tree with its own pid namespace: the restorer forks a
// worker that lives in that namespace (root is the namespace's init, in
// cryo's numbering), with a /proc of the namespace in a mount namespace of
// its own, so that every pid it meets (ptrace, /proc, kill, cgroup.procs)
// is the tree's. The worker's pid is one the image does not use. The worker
// runs body (given how its set-up went) and exits with what it returns;
// returns the worker's pid.
Result<pid_t> fork_into(pid_t root, const image::Tree& tree, const std::function<int(Status)>& body);

// The child of parent whose pid in its own namespace is inner (cryo's pid for it).
Result<pid_t> child_with_inner_pid(pid_t parent, pid_t inner);

}  // namespace cryo::ns
