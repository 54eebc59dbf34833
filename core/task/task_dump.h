// Dumping what makes a task run besides memory and files: registers, signal
// state, timers, limits, credentials and the mm fields.
#pragma once

#include "core/image/proto/task.pb.h"
#include "core/sys/proc.h"
#include "core/sys/result.h"
#include "core/tree/freeze.h"

namespace cryo::task {

// Fills `out` for a frozen (non-zombie) process. Runs a few syscalls inside
// the process and leaves it exactly as it found it.
// syscall_ip: a `syscall` instruction in its vDSO (ptrace::find_syscall_insn).
Status dump_process(const tree::FrozenProcess& proc, const std::vector<proc::MapEntry>& maps, uint64_t syscall_ip,
                    image::Process* out);

}  // namespace cryo::task
