// AIO contexts (io_setup). A context's id is the address of its ring, a
// mapping shown as "/[aio] (deleted)": a header (nr, head, tail) and nr
// completion events, of which [head, tail) are not reaped yet. The kernel
// keeps its own copy of tail and counts the free slots of the ring per CPU;
// neither is visible, and requests in flight (submitted, not completed) live
// only in the kernel.
//
// Dump: find_aio_contexts tells the rings that are contexts of the task;
// count_aio_in_flight runs in the task (remote syscalls) and refuses a
// context with requests in flight, which it counts by changing the task and
// putting it back (AioUndo: what a guard undoes should cryo die meanwhile);
// dump_aio_ring saves the header and the events not reaped. Restore: restore_aio_ring makes a context of the same
// size in the stub, moves its ring to the recorded address (the kernel's
// mremap hook for aio rings changes the id with it), brings the kernel's tail
// to the recorded one with requests that complete at once, and writes the
// events and the head back.
#pragma once

#include <linux/aio_abi.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/image/proto/mm.pb.h"
#include "core/ptrace/ptrace.h"
#include "core/sys/proc.h"
#include "core/sys/result.h"

namespace cryo {
class Guard;
}

namespace cryo::mm {

bool is_aio_ring(const proc::MapEntry& m);

// What the count changes in a task, so that it can be put back: kept by cryo
// and, told before each change, by the guard (core/guard/guard.h), which puts
// it back if cryo dies in the middle.
struct AioUndo {
  pid_t pid = 0;
  pid_t tid = 0;                       // the thread that counts
  uint64_t scratch = 0;                // room of the task's the count writes (below tid's stack pointer)
  uint64_t scratch_size = 0;
  int fd = -1;                         // the fd the count's memfd "cryo-aio" takes
  std::string affinity;                // tid's CPU mask before (a cpu_set_t)
  std::vector<uint64_t> rings_before;  // the AIO rings mapped before: a context mapped since is cryo's
  // The ring cryo may have submitted to (ctx 0: none): it must end with head
  // `head`, then `events`, then the completions not cryo's that the ring
  // holds from scan_from to the kernel's tail.
  uint64_t ctx = 0;
  uint32_t nr = 0, head = 0, scan_from = 0;
  std::vector<struct io_event> events;
};

// The rings of maps that are AIO contexts of the task (queries only): fork
// copies a ring's mapping into the child, not the context.
Result<std::vector<const proc::MapEntry*>> find_aio_contexts(pid_t pid, ptrace::Remote& r,
                                                             const std::vector<proc::MapEntry>& maps);

// Where the count works: `scratch_size` bytes of the task's at `scratch` (0:
// a page it maps, and unmaps), and the guard told each change before it is
// made (null: none).
struct AioCountRoom {
  uint64_t scratch = 0;
  uint64_t scratch_size = 0;
  Guard* guard = nullptr;
};

// Refuses the dump (naming pid and context) when one of `rings` has requests
// in flight, and leaves every ring as it was (on a failure too, as far as it
// can). Runs remote syscalls in the task through r (a thread of pid,
// stopped, which the other threads of the task must not outrun: they would
// see cryo's completions).
Status count_aio_in_flight(pid_t pid, ptrace::Remote& r, const std::vector<const proc::MapEntry*>& rings,
                           const std::vector<proc::MapEntry>& maps, const AioCountRoom& room);

// Puts back what `undo` says the count changed, through r (a thread of
// undo.pid, stopped, its registers free to use). Best effort: it goes on
// past a failure and returns the first.
Status undo_aio_count(ptrace::Remote& r, AioUndo undo);

// The ring at mapping m: its size, header and the events not yet reaped.
Status dump_aio_ring(pid_t pid, const proc::MapEntry& m, image::AioRing* out);

// Makes the context again in the stub (every other mapping in place), using
// the scratch page at `scratch` for the arguments of its syscalls.
Status restore_aio_ring(pid_t pid, ptrace::Remote& r, uint64_t scratch, const image::AioRing& ring);

}  // namespace cryo::mm
