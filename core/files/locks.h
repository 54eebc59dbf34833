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
  bool write = false;
  pid_t pid = 0;
  unsigned dev_major = 0, dev_minor = 0;
  uint64_t inode = 0;
  int64_t start = 0, length = 0;  // length 0: to the end
};

// The held locks of /proc/locks (requests still waiting are left out).
Result<std::vector<LockEntry>> parse_locks(std::string_view text);

// Adds each process's locks to its core; fails naming the pid for kinds
// that cannot be taken again (OFD locks, leases).
Status dump_locks(const tree::FrozenTree& tree, std::map<pid_t, image::Process>& cores);

// The arguments of the syscall that takes a lock again: flock(fd, op) or
// fcntl(fd, F_SETLK, struct flock) (a POSIX lock must be taken by its process
// after it closed every other fd of the file, or the close drops it).
struct LockCall {
  long nr;
  uint64_t fd, arg;
  bool needs_flock_struct;  // fcntl's third argument points to fl
  struct flock fl;
};
LockCall lock_call(const image::FileLock& lock);

}  // namespace cryo::files
