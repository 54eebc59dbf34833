// Restoring threads and everything but memory and files into a stub whose
// address space is already the recorded one.
#pragma once

#include <sys/types.h>

#include <vector>

#include "core/files/fd_zone.h"
#include "core/image/proto/files.pb.h"
#include "core/image/proto/task.pb.h"
#include "core/mm/mm_restore.h"
#include "core/ptrace/ptrace.h"

namespace cryo::task {

// Every image field the restore trusts, checked before any task exists.
Status validate_process(const image::Process& core, const std::vector<int32_t>& tids);

// Creates the recorded threads (clone3 with set_tid), each left in a ptrace
// stop; returns their tids in image order, the leader first.
Result<std::vector<pid_t>> create_threads(ptrace::Remote& leader, const mm::Trampoline& tramp,
                                          const image::Process& core);

struct StateOptions {
  files::FdZone fd_zone;  // where the inherited objects are
  // Off: the parent-death signal stays off (the root of a detached restore:
  // its parent, cryo, is about to exit).
  bool keep_pdeath = true;
  // Off: the fd table is its parent's (CLONE_FILES), whose restore made
  // its fds.
  bool own_fd_table = true;
};

// Per-thread and per-process state, run in the respective threads, ending
// with the credentials.
Status restore_state(pid_t pid, const mm::Trampoline& tramp, const image::Process& core,
                     const image::Files& files, const StateOptions& options);

// Last: unmaps the trampoline and loads the recorded registers and masks.
Status finish(pid_t pid, const mm::Trampoline& tramp, const image::Process& core);

}  // namespace cryo::task
