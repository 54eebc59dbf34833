// The guard: a small process that outlives cryo and undoes, or completes,
// what a dump or a restore leaves half done if cryo dies outright (SIGKILL,
// a crash), when cryo's own destructors never run.
//
// cryo tells the guard every change before it makes it, over a socket pair
// whose end of file wakes the guard:
//  - the sockets it puts into TCP repair mode and the network lock (given at
//    start, before the lock exists: guard first, lock second);
//  - each thread it parks, with the registers and signal mask to give back;
//  - what counting a task's AIO requests in flight changes in it (its rings
//    filled with cryo's requests, a memfd, a context, the counting thread's
//    CPUs: core/mm/aio.h), put back through that thread, parked, before any
//    thread of the task is given back;
//  - the fds cryo makes inside a task (the userfaultfd of write tracking,
//    core/mm/tracking.h; the socket pair and the copy of a page file's fd
//    through which a task writes its own pages, core/mm/task_write.h), closed again
//    through that thread, parked, the same way;
//  - the tree's processes, and the moment from which a death of cryo means
//    "finish the job" (the image is complete, or a restore is letting its
//    tree go) rather than "undo it".
// If cryo says it is done, the guard leaves without doing anything.
#pragma once

#include <sys/types.h>
#include <linux/aio_abi.h>
#include <sys/user.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/sys/result.h"

namespace cryo {
namespace mm {
struct AioUndo;
}

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
  // The same for a thread whose registers lead it to pause() at park_ip
  // through a rescue frame (core/ptrace/rescue.h) once cryo is gone: the
  // guard gives it time to get there.
  Status parking_on_frame(pid_t tid, uint64_t park_ip, const user_regs_struct& regs, uint64_t mask);
  // After the thread got its own registers and mask back.
  Status unparked(pid_t tid);
  // The AIO count of core/mm/aio.cpp, told before each change: what it is
  // about to change (undo without its ring), the ring it is about to fill
  // (undo.ctx, 0 once the ring is back as it was), the task's completions it
  // found up to scan_from (added to the ring's events), and the end
  // (everything back). Its thread must be parked (parking) before.
  Status aio_count(const mm::AioUndo& undo);
  Status aio_ring(const mm::AioUndo& undo);
  Status aio_seen(uint32_t scan_from, const std::vector<struct io_event>& more);
  Status aio_count_done();
  // An fd cryo makes inside a task, and how the guard knows it for cryo's
  // should another process sharing the fd table have taken the number.
  struct TaskFd {
    enum Kind : uint32_t {
      kUserfaultfd = 1,  // never set up, with cryo's flags (mm::stale_tracker_inode)
      kSocket = 2,       // a socket (inode: that one; 0 while cryo does not know it yet)
      kFile = 3,         // the file of device dev and inode
    };
    int fd = -1;
    Kind kind = kSocket;
    uint64_t dev = 0, inode = 0;
  };
  // cryo is about to hold these fds (all it holds) inside pid, made through
  // its thread tid (parked on a frame): should cryo die before
  // task_fds_closed(), they are closed through that thread. Told again with
  // the whole set whenever it changes; an fd is told before it exists.
  Status task_fds(pid_t pid, pid_t tid, const std::vector<TaskFd>& fds);
  Status task_fds_closed();
  // From now on a death of cryo kills the tree's processes, leaves the
  // sockets in repair mode (they close without a word to the peer) and keeps
  // the lock for the restore.
  Status finish_on_death();
  // cryo took care of everything: the guard leaves without doing anything.
  void release();

 private:
  Status send(uint32_t kind, pid_t tid, uint64_t ip, const user_regs_struct* regs, uint64_t mask, int pass_fd = -1,
              const std::string& payload = "");
  pid_t pid_ = -1;
  int life_ = -1;   // our end of the socket pair whose end of file wakes the guard
  int tools_ = -1;  // write end of the pipe the lock tools hold (net::lock_tools_hold)
};

// The binary whose hidden `guard` command the guard runs: cryo itself
// (/proc/self/exe), unless a program that embeds cryo's engine (a unit test)
// names cryo's binary here; its own would not know the command.
void set_guard_binary(const std::string& path);

// Every guard started from now on keeps fd open (it inherits it) until it
// exits (-1: none). Whoever waits for the end of file of a pipe whose write
// end this is waits for those guards too: the freezer watcher does, so that
// it freezes a cgroup again only once the guard has given every thread back
// (a frozen thread cannot be stopped to get its registers).
void guards_hold(int fd);

// The guard's side: sockets at fds 3 .. 3+count-1, the socket pair after
// them, then the read end of the lock tools' pipe, then what guards_hold()
// named, if anything. marker_inode: the inode the commit marker had when
// cryo started the guard (0: none).
int run_guard(const std::string& method, const std::string& table, int count, const std::string& commit_marker,
              uint64_t marker_inode);

}  // namespace cryo
