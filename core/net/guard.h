// A watchdog for a dump's network lock and the sockets it put into TCP repair
// mode. SIGKILL (or a crash) gives cryo no chance to undo them, and the tree,
// which runs on, would find its connections frozen: a child process that
// outlives cryo undoes both unless cryo told it first that it took care of it.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "core/sys/result.h"

namespace cryo::net {

class LockGuard {
 public:
  LockGuard() = default;
  LockGuard(LockGuard&& other) noexcept { *this = std::move(other); }
  LockGuard& operator=(LockGuard&& other) noexcept;
  ~LockGuard() { release(); }

  // Starts the guard (this binary's hidden `network-guard` command) holding
  // copies of the sockets, for the lock `table` made by `method` (or none).
  static Result<LockGuard> start(const std::string& method, const std::string& table, const std::vector<int>& sockets);
  // cryo has undone the lock itself, or committed the image (the lock stays
  // for the restore): the guard leaves without doing anything.
  void release();

 private:
  pid_t pid_ = -1;
  int life_ = -1;  // our end of the socket pair whose end of file wakes the guard
};

// The guard's side: waits for a word or the end of file on life_fd; on end of
// file takes the sockets (fds 3 .. 3+count-1) out of repair and removes the lock.
int run_lock_guard(const std::string& method, const std::string& table, int count);

}  // namespace cryo::net
