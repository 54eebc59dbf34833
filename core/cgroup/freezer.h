// The freezer cgroup a dump stops its tree with (--freeze-cgroup DIR): v1's
// freezer.state or v2's cgroup.freeze, told apart by what DIR holds.
//
// ptrace alone stops a tree one thread at a time, so a tree that forks faster
// than cryo seizes can outrun it. Frozen, no task of the cgroup runs or forks:
// cryo seizes and interrupts every thread of it, then thaws it, and each
// thread goes straight into its ptrace stop. The cgroup is left as it was
// found (a paused container stays paused), by cryo or, should cryo die, by a
// small watcher process.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "core/sys/result.h"

namespace cryo::cgroup {

class Freezer {
 public:
  // DIR: a cgroup directory with freezer.state (v1) or cgroup.freeze (v2).
  static Result<Freezer> open(const std::string& dir);
  Freezer(Freezer&& other) noexcept;
  Freezer& operator=(Freezer&& other) noexcept;
  ~Freezer();

  const std::string& dir() const { return dir_; }
  bool v2() const { return v2_; }
  // Whether the cgroup was frozen when cryo came (a paused container).
  bool was_frozen() const { return was_frozen_; }

  // Freezes the cgroup and waits until every task in it is frozen.
  Status freeze(int timeout_ms);
  // Asks for the frozen state without waiting for it.
  Status request_freeze();
  Status thaw();
  // Puts the state cryo found back (frozen or not).
  Status restore_state();

  // Every thread of the cgroup and of the cgroups below it.
  Result<std::vector<pid_t>> threads() const;

  // Starts a watcher that puts the state cryo found back if cryo dies
  // before calling unwatch(), once the guards it started have exited too
  // (guards_hold).
  Status watch();
  void unwatch();

 private:
  Freezer() = default;
  Status write_state(bool frozen);
  Result<bool> is_frozen() const;
  std::string dir_;
  bool v2_ = false;
  bool was_frozen_ = false;
  pid_t watcher_ = -1;
  int watcher_pipe_ = -1;  // our end: 'D' then close = done; close alone = cryo died
};

}  // namespace cryo::cgroup
