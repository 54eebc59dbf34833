// Dumping an address space: its mappings and the pages only memory holds.
#pragma once

#include <sys/types.h>

#include <map>
#include <vector>

#include "core/files/files_dump.h"
#include "core/image/image.h"
#include "core/image/proto/mm.pb.h"
#include "core/mm/parent_images.h"
#include "core/sys/proc.h"

namespace cryo::mm {

struct DumpStats {
  uint64_t pages_scanned = 0;
  uint64_t pages_written = 0;
  uint64_t zero_pages_skipped = 0;
  uint64_t pages_inherited = 0;  // shared copy-on-write with the parent, not stored again
  uint64_t pages_in_parent = 0;  // unchanged since an earlier copy (parent image, or this one's), which holds them
  uint64_t pages_remote = 0;     // left in the tree for a lazy migration to serve (dump --lazy-pages)
  // How often the bytes of the pages are touched (the bench shows each as
  // passes over pages_written): copied out of the tasks or files into
  // cryo's buffers, read by the zero-page test (a page that is not zero
  // shows it in its first words), read by the checksum. The copy into
  // the page files is the writer's (PageWriter::data_bytes()).
  uint64_t bytes_copied_in = 0;
  uint64_t bytes_zero_tested = 0;
  uint64_t bytes_checksummed = 0;
  // Written into their page files by the tasks themselves
  // (core/mm/task_write.h), which cryo then reads back (counted in
  // bytes_copied_in).
  uint64_t bytes_written_by_tasks = 0;
  // When set: where the all-zero pages left out are (sorted, disjoint).
  Ranges* zero_pages = nullptr;

  // Adds another's counts (not its zero_pages).
  void add(const DumpStats& other);
};

// The parent of a dumped process, when it is a living process of the tree:
// pages both hold at the same address as the same physical page are stored
// once, with the parent.
struct ParentMm {
  pid_t pid = 0;
  const std::vector<proc::MapEntry>* maps = nullptr;
  // The tree has other processes, which may share pages with this one:
  // read its memory without pinning it (process_vm_readv pins, and the
  // kernel then gives the task its own copy of each shared page).
  bool tree_shares = false;
  // The "/[aio]" rings that are AIO contexts of the process (task dump's
  // check_aio_in_flight); null: every one is.
  const std::vector<uint64_t>* aio_contexts = nullptr;
};

// The private pages of the processes of a tree (anonymous, copied on
// write), the bulk of a dump: dump_mm describes a process's mappings at once
// and queues the copy of their pages here, and run() copies what every
// process queued on one thread per CPU (from 64 MiB on, as the restore
// writes them), each thread taking the next 32 MiB of some mapping. Each
// process's Mm gets its runs in the order of its mappings, whichever thread
// copied them; only where the runs lie in the page files depends on the threads.
class PageCopies {
 public:
  PageCopies();
  ~PageCopies();
  PageCopies(const PageCopies&) = delete;
  PageCopies& operator=(const PageCopies&) = delete;

  // Copies what is queued (max_threads 0: one thread per CPU cryo may run
  // on) and empties the queue; returns how many threads copied (0: there
  // was nothing to). A process's failure stops its copy, not the others':
  // failure() says.
  Result<unsigned> run(image::PageWriter& pages, unsigned max_threads = 0);
  // How the last run() went for pid: the first failure of its copy, whose
  // pages copied before it are in its Mm all the same (a pre-dump lists
  // them as superseded).
  Status failure(pid_t pid) const;

  struct Mapping;  // (mm_dump.cpp)
  void queue(Mapping mapping);
  // Drops what is queued for pid (whose dump_mm failed).
  void forget(pid_t pid);

  // What a process needs to write its own pages (core/mm/task_write.h).
  struct TaskAccess {
    std::vector<pid_t> tids;  // the leader first
    uint64_t syscall_ip = 0;
    const std::vector<proc::MapEntry>* maps = nullptr;
  };
  // run() has pid write its private pages into a local page file itself
  // where it can, main thread issuing its syscalls: a frozen dump's copy
  // (not one made while the tree runs), its threads not parked already.
  void let_task_write(pid_t pid, TaskAccess access) { tasks_[pid] = std::move(access); }

 private:
  std::vector<Mapping> queued_;
  std::map<pid_t, Error> failed_;
  std::map<pid_t, TaskAccess> tasks_;
};

// With DumpOptions::task_writes (off by default: with a page file per
// copying thread, cryo's own copy was 3-8% faster here at 64 MiB-1 GiB, as
// fast at 2 GiB), a process writes its own pages from this much resident
// memory on (in the mappings it can write): below, starting a guard, parking
// its threads and passing it a page file (~8 ms) cost about what they save.
// Measured when every writer shared one pages.img, medians of whole
// dumps here (2 shared CPUs, load 5), read by cryo / written by the task:
// 8 MiB 26 / 31 ms, 16 MiB 35-39 / 37-45 ms, 24 MiB 50 / 46 ms, 32 MiB
// 73 / 59 ms.
inline constexpr uint64_t kTaskWriteBytes = 24u << 20;

// Whether a page is all zeros; adds the bytes it read to *tested (a page
// that is not zero shows it in its first words).
bool is_zero_page(const uint8_t* page, uint64_t* tested);

// The private pages [from, to) (counted from its start) of a mapping none of
// whose pages may be shared with the parent process, as ranges in *wanted:
// what PAGEMAP_SCAN shows, less what an earlier copy holds (named in out).
// False when this kernel has no PAGEMAP_SCAN.
Result<bool> wanted_private_ranges(const proc::MapEntry& m, uint64_t from, uint64_t to, int pagemap_fd, bool skip_zero,
                                   image::Mm* out, DumpStats* stats, const IncrementalMm* incremental, Ranges* wanted);
// Reads those ranges out of the task (read_memory) into pages as runs of out.
Status copy_private_ranges(pid_t pid, const proc::MapEntry& m, const Ranges& wanted, int mem_fd, bool skip_zero,
                           bool unpinned, image::PageWriter& pages, image::Mm* out, DumpStats* stats,
                           const IncrementalMm* incremental);

// The data segments (SEEK_DATA) of a file up to size, as page runs whose addr
// is the offset; all-zero pages are left out like holes.
Status dump_file_data(int fd, uint64_t size, google::protobuf::RepeatedPtrField<image::PageRun>* runs,
                      image::PageWriter& pages, DumpStats* stats);

// lazy: the pages of mappings a lazy restore brings in later (can_be_lazy)
// are listed as remote runs and not read (dump --lazy-pages).
// copies: the private pages are queued there, copied by its run() into out
// and stats (which, the incremental and the parent's maps, must live until
// then); without, they are copied before dump_mm returns.
Status dump_mm(pid_t pid, const std::vector<proc::MapEntry>& maps, files::FilesDump& files,
               image::PageWriter& pages, image::Mm* out, DumpStats* stats, const ParentMm& parent = {},
               const IncrementalMm* incremental = nullptr, bool lazy = false, PageCopies* copies = nullptr);

// Reads bytes of a task's memory: with process_vm_readv unless unpinned (or
// it fails), else through its /proc/PID/mem (mem_fd), which reads what the
// task cannot (PROT_NONE) and does not pin the pages: process_vm_readv's pin
// gives the task its own copy of every page it shares copy-on-write.
Status read_memory(pid_t pid, int mem_fd, bool unpinned, uint8_t* local, uint64_t remote, size_t bytes);

}  // namespace cryo::mm
