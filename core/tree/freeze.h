// Finding a process tree and stopping every thread of it with ptrace.
#pragma once

#include <sys/types.h>

#include <vector>

#include "core/sys/proc.h"
#include "core/sys/result.h"

namespace cryo::tree {

struct FrozenProcess {
  pid_t pid = 0;
  std::vector<pid_t> tids;  // the leader first
  bool zombie = false;
  bool stopped = false;  // was in group stop before we came
  proc::Stat stat;
};

// A tree whose every thread sits in a ptrace stop. Destroying it without
// kill_all() or release() resumes every task exactly where it was.
class FrozenTree {
 public:
  // Fails if the tree is not stopped within timeout_s seconds (a tree that
  // forks faster than it can be frozen).
  static Result<FrozenTree> freeze(pid_t root, int timeout_s = 10);
  FrozenTree(FrozenTree&& other) noexcept;
  FrozenTree& operator=(FrozenTree&&) = delete;
  ~FrozenTree();

  // Parents come before their children.
  const std::vector<FrozenProcess>& processes() const { return procs_; }
  const FrozenProcess* find(pid_t pid) const;
  bool contains(pid_t pid) const { return find(pid) != nullptr; }

  // Lets every task run on.
  void thaw();
  // Kills the tree (the dump has committed) and waits until the kernel has
  // let go of every task, so that its parent can reap it.
  void kill_all();

 private:
  FrozenTree() = default;
  Status add_process(pid_t pid, std::vector<pid_t>* children, int stop_timeout_ms);
  std::vector<FrozenProcess> procs_;
  bool active_ = false;
};

}  // namespace cryo::tree
