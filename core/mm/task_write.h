// A frozen process writes its own private pages into a page file of the image.
//
// Reading another process's memory costs the kernel a pin of each page
// (process_vm_readv: ~2.5 us per 4 KiB page under this hypervisor, slower
// than writing the page to tmpfs), while a process writing its own memory to
// a file moves it at the speed of a plain write(). So the process gets a
// copy of the fd of a page file of its own (PageWriter::reserve_file, which
// cryo's writers leave alone: they write theirs meanwhile) and writes its
// pages with pwritev at offsets cryo reserves, in batches of 32 MiB (1 MiB
// to a disk's filesystem, see task_write.cpp), and cryo reads each batch
// back as soon as it is written, from the page cache, into a small buffer
// for the zero-page test and the checksum of each run. All-zero pages of
// mappings that leave them out are named by no run and punched out of the
// file.
//
// The fd goes in without a path (a container has its own mounts and pids):
// a socket pair made inside the process, one end taken out with
// pidfd_getfd, the fd sent over it (SCM_RIGHTS) and received inside. It all
// runs through the process's leader with its threads parked
// (task::run_parked), a guard told every fd before it exists, so that a cryo
// killed at any step leaves the process with no fd of cryo's.
#pragma once

#include <sys/types.h>

#include <deque>
#include <functional>
#include <vector>

#include "core/image/image.h"
#include "core/mm/mm_dump.h"
#include "core/sys/proc.h"
#include "core/sys/result.h"

namespace cryo::mm {

// Some of a mapping's pages for the process to write.
struct TaskPiece {
  const proc::MapEntry* m = nullptr;
  bool skip_zero = false;
  // In: the pages to write, in order. Out: those the process did not write
  // (a fault: PROT_NONE under a protection key, a mapping gone), to be read
  // the usual way; they come after every page it wrote.
  Ranges wanted;
  google::protobuf::RepeatedPtrField<image::PageRun> runs;  // out: what it wrote, in order
  DumpStats stats;                                          // out
  Ranges zero;                                              // out: its zero pages left out, in order
};

// Gives write_by_task the process's next piece: appends it to the pieces
// and says true, or says false when there is none (called between its
// writes, on the calling thread).
using MorePieces = std::function<bool(std::deque<TaskPiece>& pieces)>;

// Has pid write the pieces into pages, a local file: those given, then each
// more() gives, in order; syscall_ip: a `syscall` instruction in pid's vDSO.
// Nothing is written (every piece left to the usual read) when the leader
// has no room for a second rescue frame or no fd to spare. Must run on the
// thread that seized pid.
Status write_by_task(pid_t pid, const std::vector<pid_t>& tids, uint64_t syscall_ip,
                     const std::vector<proc::MapEntry>& maps, std::deque<TaskPiece>& pieces, const MorePieces& more,
                     image::PageWriter& pages);

}  // namespace cryo::mm
