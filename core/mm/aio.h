// AIO contexts (io_setup). A context's id is the address of its ring, a
// mapping shown as "/[aio] (deleted)": a header (nr, head, tail) and nr
// completion events, of which [head, tail) are not reaped yet. The kernel
// keeps its own copy of tail and counts the free slots of the ring per CPU;
// neither is visible, and requests in flight (submitted, not completed) live
// only in the kernel.
//
// Dump: check_aio_in_flight runs in the task (remote syscalls) and refuses a
// context with requests in flight; dump_aio_ring saves the header and the
// events not reaped. Restore: restore_aio_ring makes a context of the same
// size in the stub, moves its ring to the recorded address (the kernel's
// mremap hook for aio rings changes the id with it), brings the kernel's tail
// to the recorded one with requests that complete at once, and writes the
// events and the head back.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "core/image/proto/mm.pb.h"
#include "core/ptrace/ptrace.h"
#include "core/sys/proc.h"
#include "core/sys/result.h"

namespace cryo::mm {

bool is_aio_ring(const proc::MapEntry& m);

// Refuses the dump (naming pid and context) when one of the task's AIO
// contexts has requests in flight, and leaves every ring as it was. Runs
// remote syscalls in the task through r (a thread of pid, stopped).
// Returns the rings that are contexts of the task: fork copies a ring's
// mapping into the child, not the context.
Result<std::vector<uint64_t>> check_aio_in_flight(pid_t pid, ptrace::Remote& r,
                                                  const std::vector<proc::MapEntry>& maps);

// The ring at mapping m: its size, header and the events not yet reaped.
Status dump_aio_ring(pid_t pid, const proc::MapEntry& m, image::AioRing* out);

// Makes the context again in the stub (every other mapping in place), using
// the scratch page at `scratch` for the arguments of its syscalls.
Status restore_aio_ring(pid_t pid, ptrace::Remote& r, uint64_t scratch, const image::AioRing& ring);

}  // namespace cryo::mm
