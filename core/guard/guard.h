// The guard: a small process that outlives cryo and undoes, or completes,
// what a dump or a restore leaves half done if cryo dies outright (SIGKILL,
// a crash), when cryo's own destructors never run.
//
// cryo tells the guard every change before it makes it, over a socket pair
// whose end of file wakes the guard:
//  - the sockets it puts into TCP repair mode and the network lock (given at
//    start, before the lock exists: guard first, lock second);
//  - each thread it parks, with the registers and signal mask to give back;
//  - the tree's processes, and the moment from which a death of cryo means
//    "finish the job" (the image is complete, or a restore is letting its
//    tree go) rather than "undo it".
// If cryo says it is done, the guard leaves without doing anything.
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/sys/result.h"

namespace cryo {

class Guard {
 public:
  Guard() = default;
  Guard(Guard&& other) noexcept { *this = std::move(other); }
  Guard& operator=(Guard&& other) noexcept;
  ~Guard() { release(); }

  // Starts the guard (this binary's hidden `guard` command) holding copies of
  // `sockets` (taken out of repair mode if cryo dies before committing) for
  // the lock `table` made by `method` (removed then; either may be empty).
  // `commit_marker`: a file whose appearance (a new inode there) means the
  // job was done even if cryo died before it could say finish_on_death (a
  // dump's inventory.img); empty for none.
  static Result<Guard> start(const std::string& method, const std::string& table, const std::vector<int>& sockets,
                             const std::string& commit_marker = "");
  bool active() const { return life_ >= 0; }

  // A process of the tree (the guard keeps a pidfd of it).
  Status add_process(pid_t pid);
  // Before a thread is parked at park_ip (see park() in core/tree/freeze.h):
  // what to give back to it.
  Status parking(pid_t tid, uint64_t park_ip, const user_regs_struct& regs, uint64_t mask);
  // After the thread got its own registers and mask back.
  Status unparked(pid_t tid);
  // From now on a death of cryo kills the tree's processes, leaves the
  // sockets in repair mode (they close without a word to the peer) and keeps
  // the lock for the restore.
  Status finish_on_death();
  // cryo took care of everything: the guard leaves without doing anything.
  void release();

 private:
  Status send(uint32_t kind, pid_t tid, uint64_t ip, const user_regs_struct* regs, uint64_t mask, int pass_fd = -1);
  pid_t pid_ = -1;
  int life_ = -1;   // our end of the socket pair whose end of file wakes the guard
  int tools_ = -1;  // write end of the pipe the lock tools hold (net::lock_tools_hold)
};

// The guard's side: sockets at fds 3 .. 3+count-1, the socket pair after
// them, then the read end of the lock tools' pipe. marker_inode: the inode
// the commit marker had when cryo started the guard (0: none).
int run_guard(const std::string& method, const std::string& table, int count, const std::string& commit_marker,
              uint64_t marker_inode);

}  // namespace cryo
