#include "core/mm/mm_restore.h"

#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include <sched.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <functional>

#include "core/mm/aio.h"
#include "core/sys/io.h"
#include "core/sys/log.h"
#include "core/sys/parallel.h"
#include "core/sys/proc.h"
#include "core/sys/progress.h"
#include "core/sys/util.h"

namespace cryo::mm {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kTaskSize = 0x7ffffffff000ULL;
constexpr uint64_t kMinAddr = 0x10000;
constexpr uint64_t kMadvGuardInstall = 102;  // Linux 6.13, newer than Debian's headers
constexpr long kSysMseal = 462;              // Linux 6.10, likewise
// The unit of writing pages in: one syscall's worth, small enough for the writers to share evenly.
constexpr uint64_t kPieceBytes = 8u << 20;

bool is_special(image::Vma::Kind kind) {
  return kind == image::Vma::VDSO || kind == image::Vma::VVAR || kind == image::Vma::VVAR_VCLOCK;
}

const char* special_name(image::Vma::Kind kind) {
  switch (kind) {
    case image::Vma::VDSO: return "[vdso]";
    case image::Vma::VVAR: return "[vvar]";
    case image::Vma::VVAR_VCLOCK: return "[vvar_vclock]";
    default: return "";
  }
}

std::string hex(uint64_t v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%lx", static_cast<unsigned long>(v));
  return buf;
}

struct PrctlMmMap {
  uint64_t start_code, end_code, start_data, end_data, start_brk, brk, start_stack, arg_start, arg_end, env_start,
      env_end;
  uint64_t auxv;
  uint32_t auxv_size;
  uint32_t exe_fd;
};

// Moves the stub's vDSO and vvar pages to the recorded addresses, through a
// hole first since the two layouts may overlap (MREMAP_FIXED would unmap).
Status move_specials(pid_t pid, ptrace::Remote& r, const image::Mm& mm, const std::vector<proc::MapEntry>& own,
                     std::vector<std::pair<uint64_t, uint64_t>> used) {
  struct Move {
    uint64_t from, size, to, temp;
  };
  std::vector<Move> moves;
  for (const auto& m : own) {
    if (m.path != "[vdso]" && m.path != "[vvar]" && m.path != "[vvar_vclock]") continue;
    const image::Vma* target = nullptr;
    for (const auto& v : mm.vmas())
      if (is_special(v.kind()) && m.path == special_name(v.kind())) target = &v;
    if (!target) {
      CRYO_TRY(r.call("munmap special mapping", SYS_munmap, {m.start, m.end - m.start}));
      continue;
    }
    if (target->end() - target->start() != m.end - m.start)
      return Error(EINVAL, "pid " + std::to_string(pid) + ": " + m.path + " has " +
                               std::to_string(m.end - m.start) + " bytes here and " +
                               std::to_string(target->end() - target->start()) +
                               " in the image (a different kernel)");
    if (target->start() != m.start) moves.push_back({m.start, m.end - m.start, target->start(), 0});
  }
  for (auto& mv : moves) {
    mv.temp = find_hole(used, mv.size, 0x40000000);
    used.emplace_back(mv.temp, mv.temp + mv.size);
    CRYO_ASSIGN(long moved, r.raw(SYS_mremap, {mv.from, mv.size, mv.size, MREMAP_MAYMOVE | MREMAP_FIXED, mv.temp}));
    if (moved == -EPERM)
      return Error(EPERM, "the vDSO cannot be moved: this kernel seals it (CONFIG_MSEAL_SYSTEM_MAPPINGS)");
    CRYO_ASSIGN(long got, moved < 0 ? Result<long>(Error(static_cast<int>(-moved), "mremap")) : Result<long>(moved));
    if (static_cast<uint64_t>(got) != mv.temp) return Error(EINVAL, "mremap moved the vDSO elsewhere");
  }
  for (auto& mv : moves) {
    CRYO_ASSIGN(long got, r.call("mremap", SYS_mremap, {mv.temp, mv.size, mv.size, MREMAP_MAYMOVE | MREMAP_FIXED, mv.to}));
    if (static_cast<uint64_t>(got) != mv.to) return Error(EINVAL, "mremap moved the vDSO elsewhere");
  }
  return {};
}

// Where a process's recorded private pages go: pieces of at most 8 MiB,
// so that the writers share the work evenly and the progress line moves.
Result<PageWrites> plan_page_writes(pid_t pid, const image::Mm& mm, const image::ImageDirReader& images,
                                    const Premaps& premaps, const std::function<bool(uint64_t)>& already_in,
                                    bool check) {
  PageWrites out;
  out.pid = pid;
  for (const auto& run : mm.pages()) {
    if (already_in(run.addr())) continue;
    uint64_t bytes = run.npages() * kPage;
    // A lazy restore's load_image left some runs unchecked (image_load.h);
    // a slice of a run (ParentPages) was checked whole when the image was
    // loaded. A lazy migration's runs that come no lazier came from its
    // source already.
    CRYO_ASSIGN(const uint8_t* src, run.remote()                  ? premaps.fetched(pid, run)
                                    : check && !run.checked()     ? images.checked_page_run(run)
                                                                  : images.run_bytes(run));
    for (uint64_t at = 0; at < bytes; at += kPieceBytes) {
      uint64_t len = std::min(kPieceBytes, bytes - at);
      out.local.push_back({const_cast<uint8_t*>(src + at), len});
      out.remote.push_back({reinterpret_cast<void*>(run.addr() + at), len});
    }
    out.bytes += bytes;
  }
  return out;
}

// Writes pieces [first, first + count) of a process's pages, with one
// process_vm_writev if it can.
Status write_pieces(const PageWrites& w, size_t first, size_t count) {
  uint64_t want = 0;
  for (size_t i = first; i < first + count; i++) want += w.local[i].iov_len;
  ssize_t got = ::process_vm_writev(w.pid, &w.local[first], count, &w.remote[first], count, 0);
  if (got != static_cast<ssize_t>(want)) {
    // Piece by piece through /proc/PID/mem (e.g. a mapping the task cannot write).
    for (size_t i = first; i < first + count; i++)
      CRYO_TRY(ptrace::write_memory(w.pid, reinterpret_cast<uint64_t>(w.remote[i].iov_base), w.local[i].iov_base,
                                    w.local[i].iov_len)
                   .wrap("pid " + std::to_string(w.pid)));
  }
  progress::add_bytes(want);
  return {};
}

}  // namespace

Result<unsigned> write_pages(const std::vector<const PageWrites*>& all) {
  // Each job: consecutive pieces of one process, kPieceBytes at most
  // together (a piece is no larger).
  struct Job {
    const PageWrites* w;
    size_t first, count;
    uint64_t bytes;
  };
  std::vector<Job> jobs;
  uint64_t total = 0;
  for (const PageWrites* w : all) {
    for (size_t i = 0; i < w->local.size(); i++) {
      uint64_t len = w->local[i].iov_len;
      Job* last = jobs.empty() ? nullptr : &jobs.back();
      if (last && last->w == w && last->bytes + len <= kPieceBytes && last->count < IOV_MAX) {
        last->count++;
        last->bytes += len;
      } else {
        jobs.push_back({w, i, 1, len});
      }
    }
    total += w->bytes;
  }
  // Filling fresh memory is bound by the kernel allocating and clearing
  // pages, one core per writer: large restores use every core, whether the
  // bytes are one process's or many's.
  unsigned writers = total < (64u << 20) ? 1 : std::min<unsigned>(usable_cpus(), static_cast<unsigned>(jobs.size()));
  CRYO_TRY(run_parallel(jobs.size(), writers,
                        [&](size_t k) { return write_pieces(*jobs[k].w, jobs[k].first, jobs[k].count); }));
  return writers;
}

uint64_t find_hole(const std::vector<std::pair<uint64_t, uint64_t>>& used, uint64_t size, uint64_t from) {
  auto ranges = used;
  std::sort(ranges.begin(), ranges.end());
  uint64_t at = std::max(from, kMinAddr);
  for (const auto& [s, e] : ranges) {
    if (e <= at) continue;
    if (s >= at + size) break;
    at = (e + kPage - 1) & ~(kPage - 1);
  }
  return at + size <= kTaskSize ? at : 0;
}

// A whole System V segment, attached with shmat as the task did, then given
// the protection its mapping had.
Status attach_sysv(ptrace::Remote& r, const image::Vma& v) {
  uint64_t flags = SHM_REMAP | ((v.prot() & PROT_WRITE) ? 0 : SHM_RDONLY) | ((v.prot() & PROT_EXEC) ? SHM_EXEC : 0);
  CRYO_ASSIGN(long got, r.call("shmat", SYS_shmat, {static_cast<uint64_t>(v.sysv_shmid()), v.start(), flags}));
  if (static_cast<uint64_t>(got) != v.start())
    return Error(EINVAL, "System V segment " + std::to_string(v.sysv_shmid()) + " landed at " + hex(static_cast<uint64_t>(got)));
  uint32_t given = PROT_READ | ((v.prot() & PROT_WRITE) ? PROT_WRITE : 0) | ((v.prot() & PROT_EXEC) ? PROT_EXEC : 0);
  if (given != v.prot()) CRYO_TRY(r.call("mprotect", SYS_mprotect, {v.start(), v.end() - v.start(), v.prot()}));
  return {};
}

Status validate_mm(const image::Mm& mm, const image::Files& files, const image::IpcNamespace* ipc) {
  uint64_t prev_end = 0;
  for (const auto& v : mm.vmas()) {
    if (v.start() % kPage || v.end() % kPage || v.start() >= v.end() || v.start() < prev_end ||
        v.end() > kTaskSize || v.start() < kMinAddr)
      return Error(EINVAL, "mapping " + hex(v.start()) + "-" + hex(v.end()) + " is malformed or overlaps another");
    if (v.pgoff() % kPage) return Error(EINVAL, "mapping " + hex(v.start()) + " has an unaligned offset");
    uint64_t guard_end = v.start();
    for (const auto& g : v.guards()) {
      if (g.start() % kPage || g.end() % kPage || g.start() < guard_end || g.end() <= g.start() || g.end() > v.end())
        return Error(EINVAL, "mapping " + hex(v.start()) + " has a malformed guard region");
      guard_end = g.end();
    }
    if ((v.kind() == image::Vma::FILE_PRIVATE || v.kind() == image::Vma::FILE_SHARED ||
         v.kind() == image::Vma::PACKET_RING) &&
        (v.file_id() == 0 || v.file_id() > static_cast<uint32_t>(files.files_size())))
      return Error(EINVAL, "mapping " + hex(v.start()) + " names an unknown file");
    if (v.kind() == image::Vma::AIO_RING) {
      bool known = false;
      for (const auto& ring : mm.aio_rings())
        known = known || (ring.ctx() == v.start() && ring.size() == v.end() - v.start());
      if (!known) return Error(EINVAL, "mapping " + hex(v.start()) + " is an AIO ring the image does not describe");
    }
    if (v.kind() == image::Vma::SYSV_SHM) {
      bool known = false;
      for (const auto& s : files.sysv_shms()) known = known || s.id() == v.sysv_shmid();
      if (ipc)
        for (const auto& s : ipc->shms()) known = known || s.id() == v.sysv_shmid();
      if (!known) return Error(EINVAL, "mapping " + hex(v.start()) + " names an unknown System V segment");
    }
    prev_end = v.end();
  }
  // Each page run lies inside one private mapping.
  size_t vi = 0;
  for (const auto& run : mm.pages()) {
    uint64_t end = run.addr() + run.npages() * kPage;
    if (run.npages() == 0 || run.addr() % kPage || end < run.addr())
      return Error(EINVAL, "page run at " + hex(run.addr()) + " is malformed");
    while (vi < static_cast<size_t>(mm.vmas_size()) && mm.vmas(static_cast<int>(vi)).end() <= run.addr()) vi++;
    if (vi == static_cast<size_t>(mm.vmas_size())) return Error(EINVAL, "page run at " + hex(run.addr()) + " lies outside every mapping");
    const auto& v = mm.vmas(static_cast<int>(vi));
    if (run.addr() < v.start() || end > v.end() ||
        (v.kind() != image::Vma::ANON_PRIVATE && v.kind() != image::Vma::FILE_PRIVATE &&
         !(v.kind() == image::Vma::ANON_SHARED && v.private_view())))
      return Error(EINVAL, "page run at " + hex(run.addr()) + " lies outside its private mapping");
  }
  return {};
}

bool can_be_lazy(const image::Vma& v) {
  return v.kind() == image::Vma::ANON_PRIVATE && (v.prot() & PROT_WRITE) && !v.locked() && !v.growsdown() &&
         v.huge_page_size() == 0;
}

Result<MappedMm> map_mm(pid_t pid, ptrace::Remote& r, const Trampoline& tramp, const image::Mm& mm,
                        const image::Process& core, const files::FileObjects& objects,
                        const image::ImageDirReader& images, const Premaps& premaps, pid_t parent,
                        std::vector<std::pair<uint64_t, uint64_t>>* lazy) {
  std::string proc_dir = "/proc/" + std::to_string(pid);
  // The stub's own rseq area is about to disappear: unregister it first.
  CRYO_ASSIGN(auto rseq, ptrace::get_rseq(pid));
  if (rseq.addr)
    CRYO_TRY(r.call("rseq unregister", SYS_rseq, {rseq.addr, rseq.len, 1 /* RSEQ_FLAG_UNREGISTER */, rseq.signature}));

  CRYO_ASSIGN(std::string maps_text, read_file(proc_dir + "/maps"));
  CRYO_ASSIGN(auto own, proc::parse_maps(maps_text));
  std::vector<std::pair<uint64_t, uint64_t>> used = {{tramp.code, tramp.code + Trampoline::kSize}};
  // The regions of shared memory stay until the mappings are made from them.
  std::vector<std::pair<uint64_t, uint64_t>> regions;
  for (const auto& reg : premaps.regions()) regions.emplace_back(reg.at, reg.at + (reg.end - reg.start));
  std::sort(regions.begin(), regions.end());
  used.insert(used.end(), regions.begin(), regions.end());
  // The stub's own mappings go, but for the trampoline, the special ones and
  // the regions. One munmap takes a whole stretch of them with the holes
  // between (cryo's image in the stub is some 50 mappings, each a remote
  // syscall of its own before).
  std::vector<std::pair<uint64_t, uint64_t>> kept = regions, doomed;
  for (const auto& m : own) {
    bool keep = m.start >= tramp.code && m.end <= tramp.code + Trampoline::kSize;
    keep = keep || m.path == "[vdso]" || m.path == "[vvar]" || m.path == "[vvar_vclock]" || m.path == "[vsyscall]";
    if (keep) {
      used.emplace_back(m.start, m.end);
      kept.emplace_back(m.start, m.end);
      continue;
    }
    uint64_t at = m.start;
    for (const auto& [s, e] : regions) {
      if (e <= at || s >= m.end) continue;
      if (s > at) doomed.emplace_back(at, s);
      at = std::max(at, e);
    }
    if (at < m.end) doomed.emplace_back(at, m.end);
  }
  std::sort(doomed.begin(), doomed.end());
  auto keeps_between = [&](uint64_t from, uint64_t to) {
    for (const auto& [s, e] : kept)
      if (s < to && e > from) return true;
    return false;
  };
  // Remote syscalls that need no answer before the next go in batches: one
  // round trip for all of them (ptrace::Remote::batch).
  std::vector<ptrace::Call> pending;
  auto flush = [&]() -> Result<std::vector<long>> {
    auto got = r.batch(tramp.batch_loop(), tramp.data, 4096, pending);
    pending.clear();
    return got;
  };
  for (size_t i = 0; i < doomed.size();) {
    uint64_t start = doomed[i].first, end = doomed[i].second;
    for (i++; i < doomed.size() && !keeps_between(end, doomed[i].first); i++) end = std::max(end, doomed[i].second);
    pending.push_back({"munmap", SYS_munmap, {start, end - start}});
  }
  CRYO_TRY(flush());
  for (const auto& v : mm.vmas()) used.emplace_back(v.start(), v.end());
  CRYO_TRY(move_specials(pid, r, mm, own, used));

  CRYO_TRY(r.call("personality", SYS_personality, {core.personality()}));

  // Map every recorded mapping, writable first where pages must be written in.
  std::vector<bool> has_pages(static_cast<size_t>(mm.vmas_size()));
  size_t vi = 0;
  for (const auto& run : mm.pages()) {
    while (mm.vmas(static_cast<int>(vi)).end() <= run.addr()) vi++;
    has_pages[vi] = true;
  }
  // Mappings that are regions built in the stub come whole and filled;
  // pages inherited from the parent's regions come as they are.
  std::vector<proc::MapEntry> now;
  if (!regions.empty()) {
    CRYO_ASSIGN(std::string text, read_file(proc_dir + "/maps"));
    CRYO_ASSIGN(now, proc::parse_maps(text));
  }
  auto remote_mremap = [&](uint64_t from, uint64_t len, uint64_t to) -> Status {
    CRYO_ASSIGN(long got, r.call("mremap", SYS_mremap, {from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to}));
    if (static_cast<uint64_t>(got) != to) return Error(EINVAL, "mremap moved memory to " + hex(static_cast<uint64_t>(got)));
    return {};
  };
  auto own_region = [&](uint64_t addr) { return premaps.find(pid, addr) != nullptr; };
  // The mmaps wait in `pending` until another remote syscall must come
  // after them (or the last): each must land where it was asked to.
  std::vector<uint64_t> mapped_at;
  auto flush_mmaps = [&]() -> Status {
    CRYO_ASSIGN(auto got, flush());
    for (size_t k = 0; k < got.size(); k++)
      if (static_cast<uint64_t>(got[k]) != mapped_at[k])
        return Error(EINVAL, "mapping " + hex(mapped_at[k]) + " landed at " + hex(static_cast<uint64_t>(got[k])));
    mapped_at.clear();
    return {};
  };
  for (int i = 0; i < mm.vmas_size(); i++) {
    const auto& v = mm.vmas(i);
    if (is_special(v.kind())) continue;
    if (const PremapRegion* reg = premaps.find(pid, v.start()); reg && inheritable(v)) {
      CRYO_TRY(flush_mmaps());
      CRYO_TRY(move_range(now, reg->at, v.end() - v.start(), v.start(), remote_mremap).wrap("shared memory at " + hex(v.start())));
      has_pages[static_cast<size_t>(i)] = true;  // made read-write: given its protection below
      continue;
    }
    bool inherits = false;
    for (const auto& run : mm.inherited()) inherits = inherits || (run.addr() >= v.start() && run.addr() < v.end());
    if (inherits) has_pages[static_cast<size_t>(i)] = true;
    uint64_t prot = v.prot() | (has_pages[static_cast<size_t>(i)] ? PROT_READ | PROT_WRITE : 0);
    uint64_t flags = MAP_FIXED | (v.noreserve() ? MAP_NORESERVE : 0);
    int64_t fd = -1;
    switch (v.kind()) {
      case image::Vma::ANON_PRIVATE:
        flags |= MAP_PRIVATE | MAP_ANONYMOUS | (v.growsdown() ? MAP_GROWSDOWN : 0);
        if (uint64_t huge = v.huge_page_size(); huge != 0) {
          if ((huge & (huge - 1)) || huge < kPage || v.start() % huge || v.end() % huge)
            return Error(EINVAL, "mapping " + hex(v.start()) + " has a bad huge page size");
          flags |= MAP_HUGETLB | (static_cast<uint64_t>(__builtin_ctzll(huge)) << MAP_HUGE_SHIFT);
        }
        break;
      case image::Vma::FILE_PRIVATE:
        flags |= MAP_PRIVATE;
        fd = objects.fd_of(v.file_id());
        break;
      case image::Vma::FILE_SHARED:
        flags |= MAP_SHARED;
        fd = objects.fd_of(v.file_id());
        break;
      case image::Vma::ANON_SHARED:
        flags |= v.private_view() ? MAP_PRIVATE : MAP_SHARED;
        fd = objects.shmem_fd(v.shmem_id());
        break;
      case image::Vma::SYSV_SHM:
        CRYO_TRY(flush_mmaps());
        CRYO_TRY(attach_sysv(r, v));
        continue;
      case image::Vma::AIO_RING:  // made by io_setup once the rest is in place
        continue;
      case image::Vma::PACKET_RING:  // the socket's ring, made when the socket was: mapped whole
        flags |= MAP_SHARED;
        fd = objects.fd_of(v.file_id());
        break;
      default:
        return Error(EINVAL, "mapping " + hex(v.start()) + " has an unknown kind");
    }
    if (v.kind() != image::Vma::ANON_PRIVATE && fd < 0)
      return Error(EINVAL, "mapping " + hex(v.start()) + " names a file the image lacks");
    pending.push_back({"mmap", SYS_mmap, {v.start(), v.end() - v.start(), prot, flags, static_cast<uint64_t>(fd), v.pgoff()}});
    mapped_at.push_back(v.start());
    if (lazy && !inherits && can_be_lazy(v)) lazy->emplace_back(v.start(), v.end());
    if (!inherits) continue;
    CRYO_TRY(flush_mmaps());
    for (const auto& run : mm.inherited()) {
      uint64_t end = run.addr() + run.npages() * kPage;
      if (run.addr() < v.start() || run.addr() >= v.end()) continue;
      for (uint64_t at = run.addr(); at < end;) {
        const PremapRegion* from = premaps.find(parent, at);
        if (!from) return Error(EINVAL, "the parent built no memory at " + hex(at));
        uint64_t len = std::min(end, from->end) - at;
        CRYO_TRY(move_range(now, from->at + (at - from->start), len, at, remote_mremap).wrap("inherited memory"));
        at += len;
      }
    }
  }
  CRYO_TRY(flush_mmaps());
  // What is left of the regions (other processes' memory) goes.
  for (const auto& [s, e] : regions) pending.push_back({"munmap", SYS_munmap, {s, e - s}});
  CRYO_TRY(flush());
  auto comes_later = [&](uint64_t addr) {
    if (!lazy) return false;
    auto it = std::upper_bound(lazy->begin(), lazy->end(), std::make_pair(addr, UINT64_MAX));
    return it != lazy->begin() && addr < std::prev(it)->second;
  };
  MappedMm out;
  CRYO_ASSIGN(out.pages, plan_page_writes(pid, mm, images, premaps,
                                          [&](uint64_t addr) { return own_region(addr) || comes_later(addr); },
                                          lazy != nullptr));
  out.made_writable = std::move(has_pages);
  return out;
}

Status finish_mm(pid_t pid, ptrace::Remote& r, const Trampoline& tramp, const image::Mm& mm,
                 const image::Process& core, const files::FileObjects& objects, const MappedMm& mapped) {
  std::vector<ptrace::Call> pending;  // in one round trip (ptrace::Remote::batch)
  for (int i = 0; i < mm.vmas_size(); i++) {
    const auto& v = mm.vmas(i);
    if (is_special(v.kind()) || v.kind() == image::Vma::AIO_RING) continue;
    if (mapped.made_writable[static_cast<size_t>(i)] &&
        (v.prot() & (PROT_READ | PROT_WRITE)) != (PROT_READ | PROT_WRITE))
      pending.push_back({"mprotect", SYS_mprotect, {v.start(), v.end() - v.start(), v.prot()}});
    for (uint32_t advice : v.madvise())
      pending.push_back({"madvise", SYS_madvise, {v.start(), v.end() - v.start(), advice}});
    // Guards before mlock, which they refuse: the pages under them were never written.
    for (const auto& g : v.guards())
      pending.push_back({"madvise(MADV_GUARD_INSTALL)", SYS_madvise, {g.start(), g.end() - g.start(), kMadvGuardInstall}});
    if (v.locked()) pending.push_back({"mlock", SYS_mlock, {v.start(), v.end() - v.start()}});
    // Last: a sealed mapping takes no other change.
    if (v.sealed()) pending.push_back({"mseal", kSysMseal, {v.start(), v.end() - v.start(), 0}});
  }
  CRYO_TRY(r.batch(tramp.batch_loop(), tramp.data, 4096, pending));

  // AIO contexts, at their ids, with the completions not yet reaped.
  for (const auto& ring : mm.aio_rings()) CRYO_TRY(restore_aio_ring(pid, r, tramp.data, ring));

  // brk, arg/env, auxv and the executable, in one prctl.
  const auto& f = core.mm();
  if (f.auxv().size() > 2048) return Error(EINVAL, "auxv is too large");
  PrctlMmMap map{f.start_code(), f.end_code(), f.start_data(), f.end_data(), f.start_brk(), f.brk(),
                 f.start_stack(), f.arg_start(), f.arg_end(), f.env_start(), f.env_end(),
                 tramp.data + 1024, static_cast<uint32_t>(f.auxv().size()), 0};
  int exe = objects.fd_of(f.exe_file_id());
  if (exe < 0) return Error(EINVAL, "the image names no executable");
  map.exe_fd = static_cast<uint32_t>(exe);
  CRYO_TRY(ptrace::write_memory(pid, tramp.data, &map, sizeof map));
  CRYO_TRY(ptrace::write_memory(pid, tramp.data + 1024, f.auxv().data(), f.auxv().size()));
  CRYO_TRY(r.call("prctl(PR_SET_MM_MAP)", SYS_prctl, {PR_SET_MM, PR_SET_MM_MAP, tramp.data, sizeof map}));
  return {};
}

}  // namespace cryo::mm
