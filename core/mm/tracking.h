// Write tracking without soft-dirty: a userfaultfd registered in
// write-protect mode with asynchronous faults (UFFD_FEATURE_WP_ASYNC, Linux
// 6.7) marks every page it protects; the first write to a page clears its
// mark in the kernel, without stopping the writer, and PAGEMAP_SCAN lists
// the pages whose mark is gone (PAGE_IS_WRITTEN), protecting them again in
// the same call.
//
// A userfaultfd belongs to the address space of the process that makes it,
// so cryo makes it inside the task (a remote syscall), takes a copy with
// pidfd_getfd and closes the task's at once: the tree never keeps a new fd.
// Its registrations last as long as the file: closing the last reference
// drops them and every write mark, and the tree runs on as before.
#pragma once

#include <sys/types.h>

#include <set>
#include <utility>
#include <vector>

#include "core/sys/fd.h"
#include "core/sys/proc.h"
#include "core/sys/result.h"

namespace cryo::mm {

using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;  // sorted, disjoint [start, end)

// Whether this kernel tracks writes so (a userfaultfd of cryo's own, on a
// page of its own); the reason when not.
Result<bool> probe_write_tracking(std::string* why);

// Makes a userfaultfd inside the stopped process pid (its syscall_ip: a
// `syscall` instruction of its vDSO) and returns cryo's copy, set up for
// asynchronous write-protection. The task's own fd is closed again, its
// threads parked and a guard told the fd first (task::run_parked), so that a
// cryo killed in between leaves no fd in the task; a leader with no rescue
// frame runs those syscalls unguarded (see the marks below).
Result<UniqueFd> make_tracker(pid_t pid, uint64_t syscall_ip, const std::vector<proc::MapEntry>& maps);

// A userfaultfd that make_tracker left in a process because cryo was killed
// between making it there and closing it: make_tracker's mark for the
// process is still in /run/cryo-trackers, and the fd has cryo's flags
// (O_CLOEXEC | O_NONBLOCK) and was never set up (no UFFDIO_API: fdinfo's
// features lack UFFD_FEATURE_INITIALIZED), so it cannot have registered
// memory or read an event: it holds nothing of the task's. A child forked
// since holds the same file. Before a pre-dump or a dump reads the tree's
// fds, such files are closed in every process of the tree (remote close).
//
// The inode of pid's fd if it is such a file (0 if not).
uint64_t stale_tracker_inode(pid_t pid, int fd);
// The inodes of the files left in the marked processes among pids.
std::set<uint64_t> stale_trackers(const std::vector<pid_t>& pids);
// Closes pid's fds of those files (stale: from stale_trackers).
Status close_stale_trackers(pid_t pid, const std::vector<proc::MapEntry>& maps, const std::set<uint64_t>& stale);
// Once they are closed: the marks go, with those of processes gone since.
void clear_tracker_marks(const std::vector<pid_t>& pids);

// The mappings write tracking can cover: private ones (anonymous, or of a
// file), not the kernel's special ones.
bool trackable(const proc::MapEntry& m);

// Registers every trackable mapping of `maps` with the userfaultfd (a
// mapping the kernel refuses is left out) and returns the ranges that are.
Ranges register_tracking(int uffd, const std::vector<proc::MapEntry>& maps);

// Write-protects the ranges: from now on a write to any of their pages
// shows in scan_written. A range no longer registered (unmapped since: the
// tree runs) is left as it is: a page never protected shows as written.
Status protect(int uffd, const Ranges& ranges);

struct Written {
  Ranges trusted;  // ranges still registered for asynchronous write tracking
  Ranges written;  // pages written since they were protected, inside trusted
};

// Which pages of `ranges` of pid were written since they were protected;
// with reprotect, protects them again in the same step. A part of a range
// no longer tracked (unmapped, mapped anew, moved by mremap, or replaced by
// exec) is not trusted: its pages are copied whole.
Result<Written> scan_written(pid_t pid, const Ranges& ranges, bool reprotect);

// Range arithmetic.
Ranges intersect(const Ranges& a, const Ranges& b);
Ranges subtract(const Ranges& a, const Ranges& b);
Ranges ranges_of(const std::vector<proc::MapEntry>& maps);

}  // namespace cryo::mm
