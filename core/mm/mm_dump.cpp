#include "core/mm/mm_dump.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "core/mm/aio.h"
#include "core/mm/guard_regions.h"
#include "core/mm/mm_restore.h"
#include "core/mm/task_write.h"
#include "core/mm/uffd_abi.h"
#include "core/net/packet_ring.h"
#include "core/sys/interrupt.h"
#include "core/sys/io.h"
#include "core/sys/scope_guard.h"
#include "core/sys/util.h"

namespace cryo::mm {

bool is_zero_page(const uint8_t* p, uint64_t* tested) {
  const uint64_t* w = reinterpret_cast<const uint64_t*>(p);
  for (size_t i = 0; i < 4096 / 8; i++)
    if (w[i]) {
      *tested += (i + 1) * 8;
      return false;
    }
  *tested += 4096;
  return true;
}

namespace {

constexpr uint64_t kPage = 4096;
constexpr const char* kAnonHuge = "/anon_hugepage (deleted)";  // MAP_ANONYMOUS|MAP_HUGETLB
constexpr uint64_t kPresent = 1ULL << 63, kSwapped = 1ULL << 62, kFileShared = 1ULL << 61;
constexpr uint64_t kGuardRegion = 1ULL << 58;  // PM_GUARD_REGION (Linux 6.14): shown as swapped, holds no page
// A swap entry's type is in the low 5 bits of its frame field (shown to
// CAP_SYS_ADMIN, 0 otherwise); type 31 (SWP_PTE_MARKER) is no page at all
// but a marker a userfaultfd's write protection leaves where none is mapped
// (UFFD_FEATURE_WP_UNPOPULATED, or a page reclaimed or zapped while
// protected). Read, it would give zeros or the file's data, and fault that in.
constexpr uint64_t kSwapTypeMask = 0x1f, kPteMarkerType = 0x1f;

// Whether the pagemap entry shows a private page of the task's own: present
// or swapped, neither the file's nor shared, nor a guard or a marker.
bool private_page(uint64_t e) {
  if (!(e & (kPresent | kSwapped)) || (e & (kFileShared | kGuardRegion))) return false;
  return (e & kPresent) || (e & kSwapTypeMask) != kPteMarkerType;
}
constexpr size_t kChunkPages = image::PageWriter::kBufferSize / kPage;  // the pages of one writer buffer
constexpr size_t kPiecePages = 64;    // 256 KiB per read, well inside a core's L2 cache

std::string what_vma(pid_t pid, const proc::MapEntry& m) {
  char buf[64];
  snprintf(buf, sizeof buf, "%lx-%lx", static_cast<unsigned long>(m.start), static_cast<unsigned long>(m.end));
  return "pid " + std::to_string(pid) + " mapping " + buf + (m.path.empty() ? "" : " " + m.path);
}

uint32_t madvise_of(const std::string& flag) {
  if (flag == "dc") return MADV_DONTFORK;
  if (flag == "wf") return MADV_WIPEONFORK;
  if (flag == "hg") return MADV_HUGEPAGE;
  if (flag == "nh") return MADV_NOHUGEPAGE;
  if (flag == "mg") return MADV_MERGEABLE;
  if (flag == "dd") return MADV_DONTDUMP;
  if (flag == "sr") return MADV_SEQUENTIAL;
  if (flag == "rr") return MADV_RANDOM;
  return 0;
}

bool is_anon_private_path(const proc::MapEntry& m) {
  return !m.shared && (m.path.empty() || m.path == "[heap]" || m.path == "[stack]" || m.path.starts_with("[anon:"));
}

// A private anonymous mapping that does not grow down: one the restore can
// build in a parent and hand down to its children (MAP_GROWSDOWN cannot be
// given to a mapping moved into place).
bool is_plain_anon(const proc::MapEntry& m, const proc::SmapsEntry& extra) {
  if (!is_anon_private_path(m)) return false;
  for (const auto& flag : extra.flags)
    if (flag == "gd") return false;
  return true;
}

// The pages read into `buf` (from pages.buffer(need)), in the order they were
// read: one PageRun per run of pages that is written, all-zero pages left out
// of segments that allow it. Zero-page detection and the checksum are one
// pass over each page right after its read, while it is in the cache (a
// page that is not zero shows it in its first words).
struct Segment {
  uint64_t addr;       // of the first page
  size_t buf_offset;   // where its pages are in the buffer
  size_t npages;
  bool skip_zero;
  google::protobuf::RepeatedPtrField<image::PageRun>* runs;
};

class RunBuilder {
 public:
  RunBuilder(uint8_t* buf, DumpStats* stats) : buf_(buf), stats_(stats) {}

  // Pages [first, first + count) of seg, read into the buffer already.
  void add(const Segment& seg, size_t first, size_t count) {
    for (size_t i = first; i < first + count; i++) {
      const uint8_t* page = buf_ + seg.buf_offset + i * kPage;
      if (seg.skip_zero && is_zero_page(page, &stats_->bytes_zero_tested)) {
        end_run();
        stats_->zero_pages_skipped++;
        if (stats_->zero_pages) {
          uint64_t addr = seg.addr + i * kPage;
          auto& zero = *stats_->zero_pages;
          if (!zero.empty() && zero.back().second == addr)
            zero.back().second += kPage;
          else
            zero.emplace_back(addr, addr + kPage);
        }
        continue;
      }
      if (!open_) {
        open_ = seg.runs->Add();
        open_->set_addr(seg.addr + i * kPage);
        open_at_ = page;
        open_pages_ = 0;
        sum_.reset();
      }
      sum_.update(page, kPage);
      stats_->bytes_checksummed += kPage;
      open_pages_++;
    }
  }
  // A run never goes on into the next segment.
  void end_run() {
    if (!open_) return;
    open_->set_npages(open_pages_);
    open_->set_xxh3(sum_.digest());
    pieces_.push_back({const_cast<uint8_t*>(open_at_), open_pages_ * kPage});
    made_.push_back(open_);
    stats_->pages_written += open_pages_;
    open_ = nullptr;
  }
  // Queues the runs' pages for writing and gives each run its offset.
  Status submit(image::PageWriter& pages) {
    end_run();
    CRYO_ASSIGN(image::PagePlace place, pages.submit(buf_, std::move(pieces_)));
    for (auto* run : made_) {
      run->set_file(place.file);
      run->set_offset(place.offset);
      place.offset += run->npages() * kPage;
    }
    return {};
  }

 private:
  uint8_t* buf_;
  DumpStats* stats_;
  image::Checksummer sum_;
  image::PageRun* open_ = nullptr;
  const uint8_t* open_at_ = nullptr;
  uint64_t open_pages_ = 0;
  std::vector<struct iovec> pieces_;
  std::vector<image::PageRun*> made_;
};

Status emit_runs(uint8_t* buf, const std::vector<Segment>& segments, image::PageWriter& pages, DumpStats* stats) {
  RunBuilder runs(buf, stats);
  for (const auto& seg : segments) {
    runs.add(seg, 0, seg.npages);
    runs.end_run();
  }
  return runs.submit(pages);
}

// The private pages of one mapping: those the pagemap shows present or
// swapped and not backed by the file (anonymous or copied on write). Runs
// are gathered into a buffer and read with one process_vm_readv.
// Where a mapping may hold pages shared with the parent: the parts of it
// the parent maps privately and anonymously too, and the parent's pagemap.
struct Sharing {
  bool read_unpinned = false;
  int parent_pagemap_fd = -1;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // sorted [start, end)
  bool covers(uint64_t addr) const {
    for (const auto& [s, e] : ranges)
      if (addr >= s && addr < e) return true;
    return false;
  }
};

constexpr uint64_t kPfnMask = (1ULL << 55) - 1;

// The page at k is the very page the parent has at that address: present in
// both (not swapped), with one frame number, which the parent held both
// before and after the child's pagemap was read (so that a page moved in
// between cannot pass for another).
bool same_frame(uint64_t child, uint64_t parent_before, uint64_t parent_after) {
  auto anon_present = [](uint64_t e) { return (e & kPresent) && !(e & (kSwapped | kFileShared)) && (e & kPfnMask); };
  return anon_present(child) && anon_present(parent_before) && parent_before == parent_after &&
         (child & kPfnMask) == (parent_before & kPfnMask);
}

// Appends a run, or extends the last one in the same mapping (a run lies
// inside one mapping).
void add_inherited(image::Mm* out, uint64_t vma_start, uint64_t addr, uint64_t npages) {
  auto* runs = out->mutable_inherited();
  if (!runs->empty()) {
    auto& last = (*runs)[runs->size() - 1];
    if (last.addr() >= vma_start && last.addr() + last.npages() * kPage == addr) {
      last.set_npages(last.npages() + npages);
      return;
    }
  }
  auto* run = runs->Add();
  run->set_addr(addr);
  run->set_npages(npages);
}

// Reads pages of the task: with process_vm_readv where it can. What the
// task cannot read itself (PROT_NONE), /proc/PID/mem can; it also reads
// without pinning the pages, which process_vm_readv does and which gives the
// task a copy of every page it shares copy-on-write.
Status read_pages(pid_t pid, const proc::MapEntry& m, int mem_fd, bool unpinned, uint8_t* local, uint64_t remote,
                  size_t bytes) {
  return read_memory(pid, mem_fd, unpinned || !m.read, local, remote, bytes);
}


// Reads the segments' pages into one writer buffer (filled bytes) and
// queues them as runs of out. Read in pieces small enough to stay in the
// cache for the pass that follows each read.
Status copy_segments(pid_t pid, const proc::MapEntry& m, int mem_fd, bool unpinned, const std::vector<Segment>& segments,
                     size_t filled, image::PageWriter& pages, DumpStats* stats, const IncrementalMm* incremental) {
  uint8_t* buf = pages.buffer(filled);  // kChunkPages pages always fit
  RunBuilder runs(buf, stats);
  for (const auto& seg : segments) {
    for (size_t done = 0; done < seg.npages; done += kPiecePages) {
      size_t n = std::min(kPiecePages, seg.npages - done);
      uint8_t* local = buf + seg.buf_offset + done * kPage;
      uint64_t remote = seg.addr + done * kPage;
      if (auto st = read_pages(pid, m, mem_fd, unpinned, local, remote, n * kPage); !st.ok()) {
        if (incremental && incremental->running) break;  // unmapped meanwhile: the frozen copy reads what is there then
        (void)pages.submit(buf, {});  // hands the buffer back
        return std::move(st).error().wrap(what_vma(pid, m));
      }
      stats->bytes_copied_in += n * kPage;
      runs.add(seg, done, n);
    }
    runs.end_run();
  }
  return runs.submit(pages);
}

// remote_runs: a lazy migration's mapping (dump --lazy-pages): its pages are
// found in the pagemap but not read; the runs name them for the source to
// serve once the tree is restored elsewhere.
// Pages [from, to) of the mapping (counted from its start); from is a
// multiple of kChunkPages, so that runs end where they would if the whole
// mapping were copied at once.
Status dump_private_pages(pid_t pid, const proc::MapEntry& m, uint64_t from, uint64_t to, int pagemap_fd, int mem_fd,
                          bool skip_zero, const Sharing& sharing, image::PageWriter& pages, image::Mm* out,
                          DumpStats* stats, const IncrementalMm* incremental, bool remote_runs) {
  std::vector<uint64_t> entries(kChunkPages), parent_before(kChunkPages), parent_after(kChunkPages);
  IncrementalMm::Cursor cursor;
  for (uint64_t first = from; first < to; first += kChunkPages) {
    size_t count = static_cast<size_t>(std::min<uint64_t>(kChunkPages, to - first));
    uint64_t base = m.start + first * kPage;
    bool may_share = false;
    for (const auto& [s, e] : sharing.ranges) may_share = may_share || (s < base + count * kPage && e > base);
    may_share = may_share && sharing.parent_pagemap_fd >= 0;
    off_t at = static_cast<off_t>(base / kPage * 8);
    if (may_share)
      CRYO_TRY(pread_all(sharing.parent_pagemap_fd, parent_before.data(), count * 8, at).wrap("read the parent's pagemap"));
    CRYO_TRY(pread_all(pagemap_fd, entries.data(), count * 8, at).wrap("read pagemap of pid " + std::to_string(pid)));
    std::vector<bool> inherited(count);
    if (may_share) {
      CRYO_TRY(pread_all(sharing.parent_pagemap_fd, parent_after.data(), count * 8, at).wrap("read the parent's pagemap"));
      for (size_t k = 0; k < count; k++)
        inherited[k] = sharing.covers(base + k * kPage) && same_frame(entries[k], parent_before[k], parent_after[k]);
      for (size_t k = 0; k < count;) {
        size_t j = k;
        while (j < count && inherited[j]) j++;
        if (j > k) {
          add_inherited(out, m.start, base + k * kPage, j - k);
          stats->pages_inherited += j - k;
        }
        k = j + 1;
      }
    }
    stats->pages_scanned += count;
    // Pages unchanged since an earlier copy stay there (or, found all zero
    // then, are left out again).
    if (incremental)
      for (size_t k = 0; k < count; k++) {
        if (!private_page(entries[k]) || inherited[k]) continue;
        auto taken = incremental->take(base + k * kPage, out, cursor);
        if (taken == IncrementalMm::Taken::kStored) {
          inherited[k] = true;
          stats->pages_in_parent++;
        } else if (taken == IncrementalMm::Taken::kZero && skip_zero) {
          inherited[k] = true;
          stats->zero_pages_skipped++;
        }
      }
    std::vector<Segment> segments;
    size_t filled = 0;
    auto wanted = [&](size_t k) {
      return private_page(entries[k]) && !inherited[k];
    };
    for (size_t i = 0; i < count;) {
      if (!wanted(i)) {
        i++;
        continue;
      }
      size_t j = i + 1;
      while (j < count && wanted(j)) j++;
      segments.push_back({base + i * kPage, filled, j - i, skip_zero, out->mutable_pages()});
      filled += (j - i) * kPage;
      i = j;
    }
    if (segments.empty()) continue;
    if (remote_runs) {
      for (const auto& seg : segments) {
        auto* run = out->add_pages();
        run->set_addr(seg.addr);
        run->set_npages(seg.npages);
        run->set_remote(true);
        stats->pages_remote += seg.npages;
      }
      continue;
    }
    CRYO_TRY(copy_segments(pid, m, mem_fd, sharing.read_unpinned, segments, filled, pages, stats, incremental));
  }
  return {};
}

// The private pages of [start, end) the same as private_page() finds them
// in the pagemap, as ranges, from PAGEMAP_SCAN: it answers in ranges of
// pages alike, where the pagemap costs 8 bytes and a lookup per page. Only
// what it shows as swapped is read from the pagemap, page by page: a
// userfaultfd's markers (where nothing is mapped) and guard regions show as
// swapped too. False when this kernel has no PAGEMAP_SCAN.
Result<bool> scan_private_pages(int pagemap_fd, const proc::MapEntry& m, uint64_t start, uint64_t end, Ranges* out) {
  std::vector<abi::PageRegion> regions(512);
  std::vector<uint64_t> entries;
  auto append = [&](uint64_t s, uint64_t e) {
    if (!out->empty() && out->back().second == s)
      out->back().second = e;
    else
      out->emplace_back(s, e);
  };
  // A page of an anonymous mapping is never the file's: asking would cost
  // a lookup of each page.
  uint64_t not_file = is_anon_private_path(m) ? 0 : abi::kPageIsFile;
  for (uint64_t at = start; at < end;) {
    abi::PmScanArg arg = {};
    arg.size = sizeof arg;
    arg.start = at;
    arg.end = end;
    arg.vec = reinterpret_cast<uint64_t>(regions.data());
    arg.vec_len = regions.size();
    arg.category_inverted = not_file;
    arg.category_mask = not_file;
    arg.category_anyof_mask = abi::kPageIsPresent | abi::kPageIsSwapped;
    arg.return_mask = abi::kPageIsPresent | abi::kPageIsSwapped;
    long n = ::ioctl(pagemap_fd, abi::kPagemapScan, &arg);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EINVAL || errno == ENOTTY)) return false;
    if (n < 0) return errno_error("PAGEMAP_SCAN for private pages");
    for (long i = 0; i < n; i++) {
      const auto& r = regions[static_cast<size_t>(i)];
      if (r.categories & abi::kPageIsPresent) {
        append(r.start, r.end);
        continue;
      }
      size_t count = (r.end - r.start) / kPage;
      entries.resize(count);
      CRYO_TRY(pread_all(pagemap_fd, entries.data(), count * 8, static_cast<off_t>(r.start / kPage * 8))
                   .wrap("read pagemap"));
      for (size_t k = 0; k < count; k++)
        if (private_page(entries[k])) append(r.start + k * kPage, r.start + (k + 1) * kPage);
    }
    if (arg.walk_end <= at) return Error(EIO, "PAGEMAP_SCAN made no progress");
    at = arg.walk_end;
  }
  return true;
}

}  // namespace

Result<bool> wanted_private_ranges(const proc::MapEntry& m, uint64_t from, uint64_t to, int pagemap_fd, bool skip_zero,
                                   image::Mm* out, DumpStats* stats, const IncrementalMm* incremental, Ranges* wanted) {
  Ranges found;
  CRYO_ASSIGN(bool scanned, scan_private_pages(pagemap_fd, m, m.start + from * kPage, m.start + to * kPage, &found));
  if (!scanned) return false;
  stats->pages_scanned += to - from;
  if (incremental) {
    Ranges zero;
    for (const auto& [s, e] : found) stats->pages_in_parent += incremental->take_range(s, e, out, &zero, wanted);
    if (skip_zero) {
      for (const auto& [s, e] : zero) stats->zero_pages_skipped += (e - s) / kPage;
    } else {  // read, as take() would have them
      wanted->insert(wanted->end(), zero.begin(), zero.end());
      std::sort(wanted->begin(), wanted->end());
    }
  } else {
    *wanted = std::move(found);
  }
  return true;
}

Status copy_private_ranges(pid_t pid, const proc::MapEntry& m, const Ranges& wanted, int mem_fd, bool skip_zero,
                           bool unpinned, image::PageWriter& pages, image::Mm* out, DumpStats* stats,
                           const IncrementalMm* incremental) {
  // One writer buffer per chunk of the mapping (kChunkPages pages from its
  // start), one segment per range in it.
  const uint64_t chunk_bytes = kChunkPages * kPage;
  std::vector<Segment> segments;
  size_t filled = 0;
  uint64_t chunk = ~uint64_t{0};
  for (auto [s, e] : wanted) {
    while (s < e) {
      uint64_t here = (s - m.start) / chunk_bytes;
      if (here != chunk && !segments.empty()) {
        CRYO_TRY(copy_segments(pid, m, mem_fd, unpinned, segments, filled, pages, stats, incremental));
        segments.clear();
        filled = 0;
      }
      chunk = here;
      uint64_t stop = std::min(e, m.start + (here + 1) * chunk_bytes);
      size_t n = static_cast<size_t>((stop - s) / kPage);
      segments.push_back({s, filled, n, skip_zero, out->mutable_pages()});
      filled += n * kPage;
      s = stop;
    }
  }
  if (!segments.empty()) CRYO_TRY(copy_segments(pid, m, mem_fd, unpinned, segments, filled, pages, stats, incremental));
  return {};
}

namespace {

// dump_private_pages for a mapping none of whose pages may be shared with
// the parent process, whose pages are read (not left to a lazy migration)
// and are not huge: which pages are private comes from PAGEMAP_SCAN, what
// an earlier copy holds is taken in ranges; the runs are those
// dump_private_pages makes. False when this kernel has no PAGEMAP_SCAN.
Result<bool> dump_private_ranges(pid_t pid, const proc::MapEntry& m, uint64_t from, uint64_t to, int pagemap_fd,
                                 int mem_fd, bool skip_zero, bool unpinned, image::PageWriter& pages, image::Mm* out,
                                 DumpStats* stats, const IncrementalMm* incremental) {
  Ranges wanted;
  CRYO_ASSIGN(bool scanned, wanted_private_ranges(m, from, to, pagemap_fd, skip_zero, out, stats, incremental, &wanted));
  if (!scanned) return false;
  CRYO_TRY(copy_private_ranges(pid, m, wanted, mem_fd, skip_zero, unpinned, pages, out, stats, incremental));
  return true;
}

// /proc/PID/map_files/START-END: the file (or shared object) a mapping maps.
std::string map_files_path(pid_t pid, const proc::MapEntry& m) {
  char range[64];
  snprintf(range, sizeof range, "%lx-%lx", static_cast<unsigned long>(m.start), static_cast<unsigned long>(m.end));
  return "/proc/" + std::to_string(pid) + "/map_files/" + range;
}

// The size of the pages of a mapping of hugetlbfs (its block size).
Result<uint64_t> huge_page_size(pid_t pid, const proc::MapEntry& m) {
  struct statfs fs;
  if (::statfs(map_files_path(pid, m).c_str(), &fs) < 0) return errno_error("statfs of the huge page mapping");
  if (fs.f_type != HUGETLBFS_MAGIC) return Error(EINVAL, "a mapping named " + m.path + " that is not of hugetlbfs");
  return static_cast<uint64_t>(fs.f_bsize);
}

// A private mapping of "/anon_hugepage (deleted)" that is a view of a shared
// object of huge pages (mapped MAP_PRIVATE through /proc/PID/map_files), not
// a MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB mapping of its own: the object
// holds pages. The pages of a mapping of its own are anonymous, never the
// file's (an object that holds none shows the same zeros either way).
bool is_huge_view(pid_t pid, const proc::MapEntry& m) {
  struct stat st;
  return !m.shared && m.path == kAnonHuge && ::stat(map_files_path(pid, m).c_str(), &st) == 0 && st.st_blocks > 0;
}

// The contents of a shared anonymous object, through /proc/PID/map_files.
Status dump_shmem(pid_t pid, const proc::MapEntry& m, image::Shmem* shmem, image::PageWriter& pages,
                  DumpStats* stats) {
  CRYO_ASSIGN(UniqueFd fd, open_file(map_files_path(pid, m), O_RDONLY));
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) return errno_error("fstat shared memory");
  shmem->set_size(static_cast<uint64_t>(st.st_size));
  if (m.path == kAnonHuge) {
    CRYO_ASSIGN(uint64_t huge, huge_page_size(pid, m));
    shmem->set_huge_page_size(huge);
  }
  return dump_file_data(fd.get(), static_cast<uint64_t>(st.st_size), shmem->mutable_pages(), pages, stats);
}

// The data of a System V segment, through /proc/PID/map_files like shmem.
Status dump_sysv_shm(pid_t pid, const proc::MapEntry& m, image::SysvShm* shm, image::PageWriter& pages,
                     DumpStats* stats) {
  CRYO_ASSIGN(UniqueFd fd, open_file(map_files_path(pid, m), O_RDONLY));
  return dump_file_data(fd.get(), shm->size(), shm->mutable_pages(), pages, stats);
}

// The merges dump_private_pages makes as it goes (add_inherited, take), made
// again where two pieces of a mapping copied apart meet.
void append_inherited(const image::Mm& from, uint64_t vma_start, image::Mm* out) {
  for (const auto& run : from.inherited()) add_inherited(out, vma_start, run.addr(), run.npages());
}

// (from's parent pages are moved, not copied: a 2 GiB process's copy made
// while it ran has some 17,000 of them, built while the tree is frozen.)
void append_parent_pages(image::Mm* from, image::Mm* out) {
  auto* entries = out->mutable_parent_pages();
  for (auto& p : *from->mutable_parent_pages()) {
    image::ParentPages* last = entries->empty() ? nullptr : &(*entries)[entries->size() - 1];
    if (!last || last->level() != p.level() || image::place_of(last->run()) != image::place_of(p.run())) {
      *entries->Add() = std::move(p);
      continue;
    }
    for (const auto& slice : p.slices()) {
      auto* slices = last->mutable_slices();
      auto* s = slices->empty() ? nullptr : &(*slices)[slices->size() - 1];
      if (s && s->addr() + s->npages() * kPage == slice.addr())
        s->set_npages(s->npages() + slice.npages());
      else
        *slices->Add() = slice;
    }
  }
}

void append_ranges(const Ranges& from, Ranges* out) {
  for (const auto& r : from) {
    if (!out->empty() && out->back().second == r.first)
      out->back().second = r.second;
    else
      out->push_back(r);
  }
}

// A piece of a mapping one thread copies: 32 MiB, a whole number of
// kChunkPages (runs end at chunks anyway). Small enough for the threads to
// share a tree's memory evenly, large enough that the pieces cost nothing.
constexpr uint64_t kPiecePagesPerThread = 8192;
// Below this much to copy, a thread of its own costs more than it saves.
constexpr uint64_t kParallelBytes = 64u << 20;

// The packet socket whose ring mapping m is: open in the tree (it was
// dumped among the files already), mapped whole and shared, as the restore
// maps it again.
Result<uint32_t> packet_ring_socket(const image::Files& files, const proc::MapEntry& m, const std::string& what) {
  for (const auto& f : files.files()) {
    if (f.kind() != image::FileDesc::SOCKET || f.socket().inode() != m.inode) continue;
    const auto& sock = f.socket();
    if (sock.family() != AF_PACKET || !sock.packet().has_rx_ring())
      return Error(what + ": a mapping of a socket that has no packet ring");
    if (!m.shared || m.offset != 0 || m.end - m.start != net::ring_bytes(sock.packet().rx_ring()))
      return Error(what + ": only part of packet socket " + std::to_string(m.inode) + "'s ring is mapped, or privately "
                   "(not supported: the restore maps the whole ring shared, as mmap of the socket gives it)");
    return f.id();
  }
  return Error(what + ": the packet socket " + std::to_string(m.inode) + " whose ring this is is open in no process "
               "of the tree (not supported: cryo reads the ring through the socket)");
}

}  // namespace

void DumpStats::add(const DumpStats& other) {
  pages_scanned += other.pages_scanned;
  pages_written += other.pages_written;
  zero_pages_skipped += other.zero_pages_skipped;
  pages_inherited += other.pages_inherited;
  pages_in_parent += other.pages_in_parent;
  pages_remote += other.pages_remote;
  bytes_copied_in += other.bytes_copied_in;
  bytes_zero_tested += other.bytes_zero_tested;
  bytes_checksummed += other.bytes_checksummed;
  bytes_written_by_tasks += other.bytes_written_by_tasks;
}

// One mapping whose private pages dump_mm found to copy, and where they go.
struct PageCopies::Mapping {
  pid_t pid = 0;
  proc::MapEntry m;
  std::shared_ptr<UniqueFd> pagemap, mem, parent_pagemap;  // the process's, open until the copy
  bool skip_zero = false;
  Sharing sharing;
  bool remote_runs = false;
  bool ranged = false;          // dump_private_ranges may copy it
  uint64_t resident_bytes = 0;  // (smaps): how much there is to copy
  image::Mm* out = nullptr;
  DumpStats* stats = nullptr;
  Ranges* zero_pages = nullptr;  // stats->zero_pages when queued
  const IncrementalMm* incremental = nullptr;
};

PageCopies::PageCopies() = default;
PageCopies::~PageCopies() = default;

void PageCopies::queue(Mapping mapping) { queued_.push_back(std::move(mapping)); }

void PageCopies::forget(pid_t pid) {
  std::erase_if(queued_, [pid](const Mapping& q) { return q.pid == pid; });
}

Status PageCopies::failure(pid_t pid) const {
  auto it = failed_.find(pid);
  if (it == failed_.end()) return {};
  return it->second;
}

Result<unsigned> PageCopies::run(image::PageWriter& pages, unsigned max_threads) {
  struct Piece {
    const Mapping* mapping;
    uint64_t from, to;
    image::Mm out;  // its runs, merged into the mapping's Mm in order afterwards
    DumpStats stats;
    Ranges zero;
    std::optional<Error> error;
    // Offered to its process to write (wanted_private_ranges found its
    // pages): what it wrote is in written, what it did not is left to copy.
    bool offered = false;
    Ranges left;
    google::protobuf::RepeatedPtrField<image::PageRun> written;
  };
  std::vector<Piece> pieces;
  uint64_t total = 0;
  for (const auto& q : queued_) {
    uint64_t npages = (q.m.end - q.m.start) / kPage;
    for (uint64_t from = 0; from < npages; from += kPiecePagesPerThread)
      pieces.push_back({.mapping = &q, .from = from, .to = std::min(npages, from + kPiecePagesPerThread)});
    total += q.resident_bytes;
  }
  failed_.clear();
  if (pieces.empty()) {
    queued_.clear();
    return 0u;
  }
  unsigned threads = total < kParallelBytes ? 1 : std::min<unsigned>(usable_cpus(), static_cast<unsigned>(pieces.size()));
  if (max_threads) threads = std::min(threads, max_threads);
  if (threads > 1) CRYO_TRY(pages.add_readers(threads));
  // A process with enough to copy writes its pages itself (core/mm/task_write.h),
  // driven from this thread (the one that seized it), while the other
  // threads copy the next pieces the usual way: every thread takes the
  // pieces in order, this one those of a writing process as long as they
  // come in a row.
  // Not an incremental copy (after a copy made while the tree ran, or a
  // pre-dump): what it writes is what changed since, which the mapping's
  // resident size does not tell, and mostly little (a -R dump's frozen
  // copy of a 512 MiB process writing 1%/s: 60 KiB, for ~5 ms of parking).
  auto writable = [&](const Mapping& q) {
    return tasks_.count(q.pid) && q.ranged && q.m.read && !q.remote_runs && !q.incremental;
  };
  std::map<pid_t, uint64_t> writable_bytes;
  for (const auto& q : queued_)
    if (writable(q)) writable_bytes[q.pid] += q.resident_bytes;
  std::set<pid_t> writers;
  for (const auto& [pid, bytes] : writable_bytes)
    if (bytes >= kTaskWriteBytes && pages.local()) writers.insert(pid);
  std::mutex mu;
  size_t cursor = 0;
  std::set<pid_t> stopped;  // a process whose copy failed: its other pieces are not copied
  // The next piece (only if `only` takes it), skipping those of stopped processes.
  auto take = [&](const std::function<bool(const Piece&)>& only) -> Piece* {
    std::lock_guard lock(mu);
    while (cursor < pieces.size() && stopped.count(pieces[cursor].mapping->pid)) cursor++;
    if (cursor == pieces.size() || (only && !only(pieces[cursor]))) return nullptr;
    return &pieces[cursor++];
  };
  auto fail = [&](Piece& piece, Error error) {
    if (!piece.error) piece.error = std::move(error);
    std::lock_guard lock(mu);
    stopped.insert(piece.mapping->pid);
  };
  // A piece the usual way (what is left of one offered to its process).
  auto copy = [&](Piece& piece) {
    const Mapping& q = *piece.mapping;
    piece.stats.zero_pages = q.zero_pages ? &piece.zero : nullptr;
    Status st = check_interrupt("while memory was being dumped");
    bool done = false;
    if (st.ok() && piece.offered) {
      done = true;
      if (!piece.left.empty())
        st = copy_private_ranges(q.pid, q.m, piece.left, q.mem->get(), q.skip_zero, q.sharing.read_unpinned, pages,
                                 &piece.out, &piece.stats, q.incremental);
    }
    if (st.ok() && !done && q.ranged) {
      auto ranged = dump_private_ranges(q.pid, q.m, piece.from, piece.to, q.pagemap->get(), q.mem->get(), q.skip_zero,
                                        q.sharing.read_unpinned, pages, &piece.out, &piece.stats, q.incremental);
      if (ranged.ok())
        done = *ranged;
      else
        st = std::move(ranged).error();
    }
    if (st.ok() && !done)
      st = dump_private_pages(q.pid, q.m, piece.from, piece.to, q.pagemap->get(), q.mem->get(), q.skip_zero, q.sharing,
                              pages, &piece.out, &piece.stats, q.incremental, q.remote_runs);
    if (!st.ok()) fail(piece, std::move(st).error());
  };
  // A piece for its process to write: its pages found (false: this kernel
  // has no PAGEMAP_SCAN, copied the usual way).
  auto offer = [&](Piece& piece, std::deque<TaskPiece>& offered) -> Result<bool> {
    const Mapping& q = *piece.mapping;
    piece.stats.zero_pages = q.zero_pages ? &piece.zero : nullptr;
    Ranges wanted;
    CRYO_ASSIGN(bool scanned, wanted_private_ranges(q.m, piece.from, piece.to, q.pagemap->get(), q.skip_zero,
                                                    &piece.out, &piece.stats, q.incremental, &wanted));
    if (!scanned) return false;
    piece.offered = true;
    offered.push_back({.m = &q.m, .skip_zero = q.skip_zero, .wanted = std::move(wanted)});
    return true;
  };
  // This thread: pieces the usual way, and a writing process's in a row by it.
  auto lead = [&] {
    for (Piece* first; (first = take(nullptr));) {
      pid_t pid = first->mapping->pid;
      if (!writers.count(pid) || !writable(*first->mapping)) {
        copy(*first);
        continue;
      }
      std::deque<TaskPiece> offered;
      std::vector<Piece*> of, later;  // later: the process's pieces it cannot write, in between
      auto offered_first = offer(*first, offered);
      if (!offered_first.ok()) {
        fail(*first, std::move(offered_first).error());
        continue;
      }
      if (!*offered_first) {
        copy(*first);
        continue;
      }
      of.push_back(first);
      auto more = [&](std::deque<TaskPiece>& into) -> bool {
        for (Piece* next; (next = take([&](const Piece& p) { return p.mapping->pid == pid; }));) {
          if (!writable(*next->mapping)) {
            later.push_back(next);
            continue;
          }
          auto got = offer(*next, into);
          if (!got.ok()) {
            fail(*next, std::move(got).error());
            return false;
          }
          if (!*got) {
            later.push_back(next);
            continue;
          }
          of.push_back(next);
          return true;
        }
        return false;
      };
      const TaskAccess& access = tasks_.at(pid);
      Status st = check_interrupt("while memory was being dumped");
      if (st.ok()) st = write_by_task(pid, access.tids, access.syscall_ip, *access.maps, offered, more, pages);
      for (size_t i = 0; i < of.size(); i++) {
        Piece& piece = *of[i];
        piece.left = std::move(offered[i].wanted);
        piece.written = std::move(offered[i].runs);
        piece.stats.add(offered[i].stats);
        append_ranges(offered[i].zero, &piece.zero);
      }
      if (!st.ok()) {
        fail(*first, std::move(st).error());
        continue;
      }
      for (Piece* piece : of)
        if (!piece->left.empty()) copy(*piece);
      for (Piece* piece : later) copy(*piece);
    }
  };
  auto work = [&] {
    for (Piece* piece; (piece = take(nullptr));) copy(*piece);
  };
  std::vector<std::thread> helpers;
  for (unsigned i = 1; i < threads; i++) helpers.emplace_back(work);
  lead();
  for (auto& t : helpers) t.join();
  // In the order they were queued, as if copied one after the other.
  for (auto& piece : pieces) {
    const Mapping& q = *piece.mapping;
    auto* runs = q.out->mutable_pages();
    for (auto& run : piece.written) *runs->Add() = std::move(run);  // before what cryo read after them
    for (auto& run : *piece.out.mutable_pages()) *runs->Add() = std::move(run);
    append_inherited(piece.out, q.m.start, q.out);
    append_parent_pages(&piece.out, q.out);
    q.stats->add(piece.stats);
    if (q.zero_pages) append_ranges(piece.zero, q.zero_pages);
    if (piece.error && !failed_.count(q.pid)) failed_.emplace(q.pid, std::move(*piece.error));
  }
  queued_.clear();
  return threads;
}

Status read_memory(pid_t pid, int mem_fd, bool unpinned, uint8_t* local, uint64_t remote, size_t bytes) {
  if (!unpinned) {
    struct iovec l = {local, bytes}, r = {reinterpret_cast<void*>(remote), bytes};
    if (::process_vm_readv(pid, &l, 1, &r, 1, 0) == static_cast<ssize_t>(bytes)) return {};
  }
  return pread_all(mem_fd, local, bytes, static_cast<off_t>(remote));
}

Status dump_file_data(int fd, uint64_t size, google::protobuf::RepeatedPtrField<image::PageRun>* runs,
                      image::PageWriter& pages, DumpStats* stats) {
  off_t pos = 0;
  while (static_cast<uint64_t>(pos) < size) {
    off_t data = ::lseek(fd, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;
      return errno_error("SEEK_DATA");
    }
    data = data / static_cast<off_t>(kPage) * static_cast<off_t>(kPage);
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return errno_error("SEEK_HOLE");
    hole = std::min<off_t>(hole, static_cast<off_t>(size));
    for (off_t at = data; at < hole;) {
      size_t bytes = static_cast<size_t>(std::min<off_t>(hole - at, static_cast<off_t>(image::PageWriter::kBufferSize)));
      size_t padded = (bytes + kPage - 1) / kPage * kPage;  // a last partial page is padded with zeros
      uint8_t* buf = pages.buffer(padded);
      std::memset(buf + bytes, 0, padded - bytes);
      auto got = pread_all(fd, buf, bytes, at);
      if (!got.ok()) {
        (void)pages.submit(buf, {});  // hands the buffer back
        return std::move(got).error().wrap("read file data");
      }
      stats->bytes_copied_in += bytes;
      CRYO_TRY(emit_runs(buf, {{static_cast<uint64_t>(at), 0, padded / kPage, true, runs}}, pages, stats));
      at += static_cast<off_t>(bytes);
    }
    pos = (hole + static_cast<off_t>(kPage) - 1) / static_cast<off_t>(kPage) * static_cast<off_t>(kPage);
  }
  return {};
}

namespace {

// pid's smaps, read now: the flags of each mapping (VmFlags), which only
// smaps shows and an madvise() may change at any time, are read frozen.
Result<std::map<uint64_t, proc::SmapsEntry>> smaps_of_pid(pid_t pid) {
  CRYO_ASSIGN(std::string text, read_file("/proc/" + std::to_string(pid) + "/smaps"));
  return proc::parse_smaps(text);
}

}  // namespace

Status dump_mm(pid_t pid, const std::vector<proc::MapEntry>& maps, files::FilesDump& files,
               image::PageWriter& pages, image::Mm* out, DumpStats* stats, const ParentMm& parent,
               const IncrementalMm* incremental, bool lazy, PageCopies* copies) {
  std::string proc_dir = "/proc/" + std::to_string(pid);
  bool private_only = incremental && incremental->private_only;
  CRYO_ASSIGN(auto smaps_of, smaps_of_pid(pid));
  auto pagemap = std::make_shared<UniqueFd>(), mem = std::make_shared<UniqueFd>();
  CRYO_ASSIGN(*pagemap, open_file(proc_dir + "/pagemap", O_RDONLY));
  CRYO_ASSIGN(*mem, open_file(proc_dir + "/mem", O_RDONLY));
  PageCopies own;  // without copies: copied here, before returning
  PageCopies& queue = copies ? *copies : own;
  // A process that fails here is left out (or the dump fails): nothing of
  // it stays queued, to be copied into an Mm its caller let go.
  ScopeGuard unqueue([&queue, pid] { queue.forget(pid); });
  // The parent's private anonymous mappings (not growing down): where the
  // restored child can inherit pages from the restored parent.
  auto parent_pagemap = std::make_shared<UniqueFd>();
  std::vector<std::pair<uint64_t, uint64_t>> parent_anon;
  if (parent.pid > 0 && parent.maps) {
    std::string parent_dir = "/proc/" + std::to_string(parent.pid);
    CRYO_ASSIGN(auto parent_smaps_of, smaps_of_pid(parent.pid));
    CRYO_ASSIGN(*parent_pagemap, open_file(parent_dir + "/pagemap", O_RDONLY));
    for (const auto& pm : *parent.maps)
      if (is_plain_anon(pm, parent_smaps_of[pm.start])) parent_anon.emplace_back(pm.start, pm.end);
  }

  for (const auto& m : maps) {
    CRYO_TRY(check_interrupt("while memory was being dumped"));
    if (m.path == "[vsyscall]") continue;  // not a VMA: every process has it
    std::string what = what_vma(pid, m);
    auto* v = out->add_vmas();
    v->set_start(m.start);
    v->set_end(m.end);
    v->set_prot((m.read ? PROT_READ : 0) | (m.write ? PROT_WRITE : 0) | (m.exec ? PROT_EXEC : 0));
    v->set_pgoff(m.offset);
    v->set_name(m.path);
    const proc::SmapsEntry& extra = smaps_of[m.start];
    for (const auto& flag : extra.flags) {
      if (flag == "gd") v->set_growsdown(true);
      if (flag == "nr") v->set_noreserve(true);
      if (flag == "lo") v->set_locked(true);
      if (flag == "sl") v->set_sealed(true);
      if ((flag == "io" || flag == "pf") && !m.path.starts_with("[v"))
        return Error(what + ": device (I/O) mappings are not supported");
      if ((flag == "um" || flag == "uw") && !(incremental && incremental->registered_by_cryo))
        return Error(what + ": userfaultfd-registered memory is not supported");
      if (uint32_t advice = madvise_of(flag)) v->add_madvise(advice);
    }

    bool private_pages = false;
    if (m.path == "[vdso]") {
      v->set_kind(image::Vma::VDSO);
    } else if (m.path == "[vvar]") {
      v->set_kind(image::Vma::VVAR);
    } else if (m.path == "[vvar_vclock]") {
      v->set_kind(image::Vma::VVAR_VCLOCK);
    } else if (m.path == "/dev/zero (deleted)" || m.path.starts_with("[anon_shmem:") ||
               (m.path == kAnonHuge && m.shared) || is_huge_view(pid, m)) {
      v->set_kind(image::Vma::ANON_SHARED);
      v->set_shmem_id(m.inode);
      if (private_only) continue;
      bool is_new = false;
      image::Shmem* shmem = files.add_shmem(m.inode, &is_new);
      if (is_new) CRYO_TRY(dump_shmem(pid, m, shmem, pages, stats).wrap(what));
      // MAP_PRIVATE of the object (through /proc/PID/map_files): the pages
      // written since are the mapping's own (anonymous in the pagemap); the
      // others show the object as it is now.
      v->set_private_view(!m.shared);
      private_pages = !m.shared;
    } else if (m.path == kAnonHuge) {  // MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB
      v->set_kind(image::Vma::ANON_PRIVATE);
      CRYO_ASSIGN(uint64_t huge, huge_page_size(pid, m));
      v->set_huge_page_size(huge);
      private_pages = true;
    } else if (m.path.empty() || m.path == "[heap]" || m.path == "[stack]" || m.path.starts_with("[anon:")) {
      if (m.shared) return Error(what + ": unexpected shared anonymous mapping");
      v->set_kind(image::Vma::ANON_PRIVATE);
      private_pages = true;
    } else if (m.path.starts_with("/SYSV")) {
      v->set_kind(image::Vma::SYSV_SHM);
      int shmid = static_cast<int>(m.inode);
      v->set_sysv_shmid(shmid);
      if (private_only) continue;
      bool is_new = false;
      CRYO_ASSIGN(image::SysvShm * shm, files.add_sysv_shm(shmid, what, &is_new));
      uint64_t unit = kPage;  // SHM_HUGETLB: a file of hugetlbfs, mapped in whole huge pages
      struct statfs fs;
      if (::statfs(map_files_path(pid, m).c_str(), &fs) == 0 && fs.f_type == HUGETLBFS_MAGIC) {
        unit = static_cast<uint64_t>(fs.f_bsize);
        shm->set_huge_page_size(unit);
      }
      if (m.offset != 0 || m.end - m.start != (shm->size() + unit - 1) / unit * unit)
        return Error(what + ": only part of System V segment " + std::to_string(shmid) +
                     " is mapped (not supported)");
      if (is_new) CRYO_TRY(dump_sysv_shm(pid, m, shm, pages, stats).wrap(what));
    } else if (is_aio_ring(m) && parent.aio_contexts &&
               std::find(parent.aio_contexts->begin(), parent.aio_contexts->end(), m.start) ==
                   parent.aio_contexts->end()) {
      // A parent's ring that fork copied: no context of this process, and
      // nothing it could use. It comes back as empty memory in its place.
      v->set_kind(image::Vma::ANON_PRIVATE);
      v->clear_madvise();
      continue;
    } else if (is_aio_ring(m)) {  // io_setup's ring: the context's id is its address
      v->set_kind(image::Vma::AIO_RING);
      v->clear_madvise();  // VM_DONTCOPY and the rest are io_setup's own
      CRYO_TRY(dump_aio_ring(pid, m, out->add_aio_rings()));
      continue;
    } else if (m.path.starts_with("socket:[")) {
      // A packet socket's ring: the kernel's memory, mapped again from the
      // socket once it has its ring back (core/net/packet_ring.h).
      v->set_kind(image::Vma::PACKET_RING);
      v->clear_madvise();
      if (private_only) continue;
      CRYO_ASSIGN(uint32_t id, packet_ring_socket(files.files(), m, what));
      v->set_file_id(id);
      continue;
    } else if (struct statfs fs; m.path == "/secretmem (deleted)" &&
               ::statfs(map_files_path(pid, m).c_str(), &fs) == 0 && fs.f_type == SECRETMEM_MAGIC) {
      return Error(what + ": memfd_secret memory is not supported (no other process can read its pages)");
    } else if (m.path.starts_with("/")) {
      v->set_kind(m.shared ? image::Vma::FILE_SHARED : image::Vma::FILE_PRIVATE);
      private_pages = !m.shared;
      if (!private_only) {  // the copy made while the tree runs needs its pages only
        // A shared mapping of a file opened read-write may become writable
        // later (VmFlags "mw", VM_MAYWRITE) even while it is PROT_READ:
        // reopen it so.
        bool may_write = m.write || std::find(extra.flags.begin(), extra.flags.end(), "mw") != extra.flags.end();
        CRYO_ASSIGN(uint32_t id, files.add_mapped_file(map_files_path(pid, m), m.shared && may_write, what));
        v->set_file_id(id);
      }
    } else {
      return Error(what + ": this kind of mapping is not supported");
    }
    if (!v->name().starts_with("[v")) {
      CRYO_ASSIGN(auto guards, find_guard_regions(pagemap->get(), m.start, m.end));
      for (const auto& [start, end] : guards) {
        auto* g = v->add_guards();
        g->set_start(start);
        g->set_end(end);
      }
    }
    // A mapping with nothing resident or swapped (a large PROT_NONE
    // reservation, say) has no page to look for in the pagemap.
    Sharing sharing;
    // Pages another process maps too (copy-on-write after a fork, inside
    // the tree or out of it, or merged by KSM) are read without a pin:
    // process_vm_readv's would have the kernel copy each one for this
    // process first (a dump -R of a child sharing 256 MiB with its parent
    // left it 256 MiB of copies of its own).
    sharing.read_unpinned = parent.tree_shares || extra.shared_kb > 0;
    if (is_plain_anon(m, extra)) {
      sharing.parent_pagemap_fd = parent_pagemap->get();
      for (const auto& [s, e] : parent_anon)
        if (s < m.end && e > m.start) sharing.ranges.emplace_back(std::max(s, m.start), std::min(e, m.end));
    }
    // (Huge pages are not counted in Rss.)
    bool remote = lazy && can_be_lazy(*v);
    bool ranged = !remote && v->huge_page_size() == 0 && m.path != kAnonHuge &&
                  (sharing.parent_pagemap_fd < 0 || sharing.ranges.empty());
    if (private_pages && (extra.resident_kb > 0 || v->huge_page_size() != 0 || m.path == kAnonHuge))
      queue.queue({.pid = pid,
                   .m = m,
                   .pagemap = pagemap,
                   .mem = mem,
                   .parent_pagemap = parent_pagemap,
                   .skip_zero = v->kind() == image::Vma::ANON_PRIVATE,
                   .sharing = std::move(sharing),
                   .remote_runs = remote,
                   .ranged = ranged,
                   .resident_bytes = extra.resident_kb * 1024,
                   .out = out,
                   .stats = stats,
                   .zero_pages = stats->zero_pages,
                   .incremental = incremental});
  }
  unqueue.cancel();
  if (copies) return {};
  CRYO_TRY(own.run(pages, 1));
  return own.failure(pid);
}

}  // namespace cryo::mm
