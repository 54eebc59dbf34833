// cryo's changes inside a process that must not outlive a cryo killed in
// the middle (SIGKILL): every other thread of the process parked, the leader
// running cryo's syscalls over a second rescue frame, below its own, that
// leads it to pause() with every signal blocked should cryo die, and a guard
// (core/guard/guard.h), told of every change before it is made, that puts it
// back through the parked leader before any thread of the process runs.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/guard/guard.h"
#include "core/ptrace/ptrace.h"
#include "core/ptrace/rescue.h"
#include "core/sys/proc.h"
#include "core/sys/result.h"
#include "core/task/task_probe.h"

namespace cryo::task {

// What body gets: the leader's syscalls, the guard, and room of the task's
// between the two frames, below the stack pointer (nothing is mapped).
struct ParkedRoom {
  ptrace::Remote& remote;
  Guard& guard;
  uint64_t scratch;
  uint64_t size;
};

// Runs body with the process's threads (tids, leader included) parked: the
// first of room_sizes that fits below the leader's rescue frame (attached
// with plan `rescue`). Every thread is back as before afterwards, the guard
// told last. False, body not run, when the leader has no rescue frame or no
// room for a second one (a stack cryo cannot vouch for, no vDSO): the caller
// runs its syscalls unguarded. `step`: the failpoints' prefix
// (STEP.guarded, STEP.parking, STEP.parked).
Result<bool> run_parked(const std::vector<pid_t>& tids, TaskProbe& leader, const ptrace::RescuePlan* rescue,
                        const std::vector<proc::MapEntry>& maps, const std::vector<uint64_t>& room_sizes,
                        const std::string& step, const std::function<Status(ParkedRoom&)>& body);

// The lowest fd number free in pid's table: the one a new fd of the task
// takes (the guard is told it before).
Result<int> lowest_free_fd(pid_t pid);
// The `count` lowest: those the task's next new fds take, in order.
Result<std::vector<int>> lowest_free_fds(pid_t pid, size_t count);

}  // namespace cryo::task
