// Finding a process tree and stopping every thread of it with ptrace.
#pragma once

#include <sys/types.h>

#include <sys/user.h>

#include <map>
#include <set>
#include <vector>

#include "core/cgroup/freezer.h"
#include "core/guard/guard.h"
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

// What a parked thread had (see FrozenTree::park).
struct ParkedThread {
  user_regs_struct regs;
  uint64_t mask;
};
// Parks one stopped thread at the `syscall` instruction at ip, the guard told
// first, and records in `parked` what it had before changing it (a failure
// halfway leaves it there to be unparked); unpark_thread gives it back what
// it had, then tells the guard.
Status park_thread(Guard& guard, pid_t tid, uint64_t ip, std::map<pid_t, ParkedThread>* parked);
Status unpark_thread(Guard& guard, pid_t tid, const ParkedThread& was);

// A tree whose every thread sits in a ptrace stop. Destroying it without
// kill_all() or release() resumes every task exactly where it was.
class FrozenTree {
 public:
  // Fails if the tree is not stopped within timeout_s seconds (a tree that
  // forks faster than it can be frozen). With a freezer (which must outlive
  // the tree), every thread of its cgroup is seized while the cgroup is
  // frozen, so nothing in it can fork meanwhile; each must belong to the
  // tree. The cgroup is thawed for the dump and left, when the tree is let
  // go, as it was found.
  static Result<FrozenTree> freeze(pid_t root, int timeout_s = 10, cgroup::Freezer* freezer = nullptr);
  FrozenTree(FrozenTree&& other) noexcept;
  FrozenTree& operator=(FrozenTree&&) = delete;
  ~FrozenTree();

  // Parents come before their children.
  const std::vector<FrozenProcess>& processes() const { return procs_; }
  const FrozenProcess* find(pid_t pid) const;
  bool contains(pid_t pid) const { return find(pid) != nullptr; }

  // Parks every thread while cryo works on what the tree's threads could
  // touch if they ran (sockets in TCP repair mode): each would run nothing
  // but pause() at the `syscall` instruction at syscall_ips[pid], with every
  // signal blocked, should cryo die; the guard, told first, gives each its
  // registers and mask back. Parked threads stay stopped as before.
  Status park(Guard& guard, const std::map<pid_t, uint64_t>& syscall_ips);
  // Gives every parked thread its own registers and mask back.
  Status unpark(Guard& guard);

  // Lets every task run on (unparking any parked thread first).
  void thaw();
  // Kills the tree (the dump has committed) and waits until the kernel has
  // let go of every task, so that its parent can reap it.
  void kill_all();

 private:
  FrozenTree() = default;
  Status add_process(pid_t pid, std::vector<pid_t>* children, int stop_timeout_ms);
  Status seize_frozen_cgroup(int timeout_ms);
  std::vector<FrozenProcess> procs_;
  std::map<pid_t, ParkedThread> parked_;
  cgroup::Freezer* freezer_ = nullptr;
  std::set<pid_t> strays_;  // seized and interrupted in the frozen cgroup, not yet found in the tree
  bool active_ = false;
};

}  // namespace cryo::tree
