// Restore --lazy-pages hands each restored process's userfaultfd to the
// lazy-pages daemon over a unix socket (DIR/lazy-pages.socket by default).
//
// The userfaultfd must be made in the restored process's own address space:
// the stub makes it by a remote syscall, cryo takes a copy (pidfd_getfd),
// closes the stub's, sets it up (UFFDIO_API with the events the daemon must
// follow: fork, mremap, madvise(MADV_DONTNEED), munmap) and registers the
// mappings whose pages were left out. The daemon gets: the pid (of the image),
// the registered ranges, the userfaultfd and a pidfd that tells it when the
// process is gone.
//
// On the socket (a stream): a Handover header with the two fds attached, then
// `ranges` pairs of u64 [start, end); a header of kind kDone ends the session.
//
// Before that, a lazy migration's restore may ask for pages it must write
// itself (memory its processes share copy-on-write, mm::remote_runs_written_here):
// a header of kind kFetch (no fds, ranges 1) and one [start, end) of the pid's
// remote runs; the daemon answers with the bytes (zero pages as zeros), or
// hangs up if the source fails.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/ptrace/ptrace.h"
#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::lazy {

constexpr uint32_t kHandoverMagic = 0x5a4c5943;  // "CYLZ"
constexpr uint32_t kHandoverVersion = 2;
constexpr const char* kSocketName = "lazy-pages.socket";

struct Handover {
  uint32_t magic = kHandoverMagic;
  uint32_t version = kHandoverVersion;
  uint32_t kind = 0;  // kProcess, kDone or kFetch
  int32_t pid = 0;
  uint64_t ranges = 0;
};
constexpr uint32_t kProcess = 1, kDone = 2, kFetch = 3;

// The userfaultfd events and features a lazy restore relies on.
uint64_t wanted_features();

// The restore's side: one connection to the daemon.
class HandoverClient {
 public:
  static Result<HandoverClient> connect(const std::string& socket_path);
  // Makes the userfaultfd in pid (stopped under ptrace, r its remote
  // syscalls), registers ranges with it and hands it over.
  Status hand_over(pid_t pid, ptrace::Remote& r, const std::vector<std::pair<uint64_t, uint64_t>>& ranges);
  // The bytes of pid's pages [addr, addr + npages * 4096) (remote runs of the
  // image), from the source through the daemon.
  Result<std::vector<uint8_t>> fetch(pid_t pid, uint64_t addr, uint64_t npages);
  // No more processes come.
  Status done();

 private:
  UniqueFd sock_;
};

}  // namespace cryo::lazy
