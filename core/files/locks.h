// File locks: flock() and POSIX record locks the processes of the tree hold,
// read from /proc/locks, and taken again by the restored processes.
#pragma once

#include <fcntl.h>
#include <sys/types.h>

#include <map>
#include <string_view>
#include <vector>

#include "core/image/proto/task.pb.h"
#include "core/sys/result.h"
#include "core/tree/freeze.h"

namespace cryo::files {

struct LockEntry {
  std::string kind;  // POSIX, FLOCK, OFDLCK, LEASE, DELEG...
  std::string state;  // ADVISORY; for a lease ACTIVE, BREAKING or BREAKER
  std::string mode;   // READ, WRITE (UNLCK: a lease being broken to nothing)
  bool write = false;
  pid_t pid = 0;
  unsigned dev_major = 0, dev_minor = 0;
  uint64_t inode = 0;
  int64_t start = 0, length = 0;  // length 0: to the end
};

// The held locks of /proc/locks (requests still waiting are left out).
Result<std::vector<LockEntry>> parse_locks(std::string_view text);

// Adds each process's locks to its core; fails naming the pid and fd for
// kinds that cannot be taken again (a lease being broken, delegations).
// OFD locks and leases belong to an open file description: the fdinfo of
// the fds that hold it shows them, and one holder takes them again.
Status dump_locks(const tree::FrozenTree& tree, std::map<pid_t, image::Process>& cores);

// The arguments of the syscall that takes a lock again: flock(fd, op),
// fcntl(fd, F_SETLK or F_OFD_SETLK, struct flock) or fcntl(fd, F_SETLEASE,
// type) (a POSIX lock must be taken by its process after it closed every
// other fd of the file, or the close drops it; a lease by its holder, whom
// the kernel makes the file's owner for the SIGIO of a lease break).
struct LockCall {
  long nr;
  uint64_t fd, arg;
  uint64_t third;           // the third argument, unless it points to fl
  bool needs_flock_struct;  // fcntl's third argument points to fl
  struct flock fl;
};
LockCall lock_call(const image::FileLock& lock);

}  // namespace cryo::files
