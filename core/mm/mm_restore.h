// Restoring an address space into a stub process stopped under ptrace: its
// own mappings go, the recorded ones come, the vDSO moves to where it was,
// pages are written in and the mm fields (brk, arg/env, auxv, exe) are set.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <vector>

#include "core/files/files_restore.h"
#include "core/image/image.h"
#include "core/image/proto/ipc.pb.h"
#include "core/image/proto/mm.pb.h"
#include "core/image/proto/task.pb.h"
#include "core/mm/premap.h"
#include "core/ptrace/ptrace.h"

namespace cryo::mm {

// The two pages every stub inherits from the restorer: a `syscall`
// instruction to run remote syscalls with, and a scratch page for arguments.
struct Trampoline {
  uint64_t code = 0;  // page 0: syscall; int3 -- and ptrace::kBatchLoop at kBatchLoopOffset
  uint64_t data = 0;  // page 1: arguments of remote syscalls
  static constexpr uint64_t kSize = 2 * 4096;
  static constexpr uint64_t kBatchLoopOffset = 16;
  uint64_t batch_loop() const { return code + kBatchLoopOffset; }
};

// Picks a free range of `size` bytes that overlaps none of `used`
// ([start, end) pairs), at or above `from`.
uint64_t find_hole(const std::vector<std::pair<uint64_t, uint64_t>>& used, uint64_t size, uint64_t from);

// Validates the recorded layout (sorted, aligned, inside user space, page
// runs inside private mappings) before anything is mapped.
// ipc: the tree's own IPC namespace, whose segments a mapping may attach.
Status validate_mm(const image::Mm& mm, const image::Files& files, const image::IpcNamespace* ipc = nullptr);

// Whether a mapping's pages may come after the process runs (restore
// --lazy-pages): plain private anonymous memory, writable, neither locked nor
// growing down.
bool can_be_lazy(const image::Vma& v);

// A process's memory is restored in three steps, so that the pages of every
// process of the tree are written together, on every core:
//   map_mm     its mappings, writable where pages go (remote syscalls);
//   write_pages  the pages of all processes at once;
//   finish_mm  each mapping's own protection and advice, AIO contexts, and
//              the mm fields (remote syscalls).

// The pages to write into one process: the image's bytes and where they go.
struct PageWrites {
  pid_t pid = 0;
  std::vector<struct iovec> local, remote;
  uint64_t bytes = 0;
};

// What map_mm leaves for the other two steps.
struct MappedMm {
  PageWrites pages;
  std::vector<bool> made_writable;  // per mapping of the image: writable for its pages only
};

// premaps: the regions the stubs built (see premap.h); parent: the pid
// whose regions the process inherits pages from. lazy: when given, the pages
// of mappings that can be lazy (and are made empty here) are not written, and
// those mappings' ranges are appended, sorted, for userfaultfd.
Result<MappedMm> map_mm(pid_t pid, ptrace::Remote& remote, const Trampoline& tramp, const image::Mm& mm,
                        const image::Process& core, const files::FileObjects& objects,
                        const image::ImageDirReader& images, const Premaps& premaps, pid_t parent,
                        std::vector<std::pair<uint64_t, uint64_t>>* lazy = nullptr);

// Writes the pages of every process given; an error names the pid. Returns
// how many threads wrote them.
Result<unsigned> write_pages(const std::vector<const PageWrites*>& all);

Status finish_mm(pid_t pid, ptrace::Remote& remote, const Trampoline& tramp, const image::Mm& mm,
                 const image::Process& core, const files::FileObjects& objects, const MappedMm& mapped);

}  // namespace cryo::mm
