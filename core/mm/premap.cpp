#include "core/mm/premap.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "core/mm/mm_restore.h"
#include "core/sys/io.h"
#include "core/sys/util.h"

namespace cryo::mm {
namespace {

constexpr uint64_t kPage = 4096;

std::string hex(uint64_t v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%lx", static_cast<unsigned long>(v));
  return buf;
}

// Whether [start, end) is covered by inheritable mappings of mm.
bool covered(const image::Mm& mm, uint64_t start, uint64_t end) {
  for (const auto& v : mm.vmas()) {
    if (v.end() <= start || v.start() > start) continue;
    if (!inheritable(v)) return false;
    start = v.end();
    if (start >= end) return true;
  }
  return start >= end;
}

}  // namespace

bool inheritable(const image::Vma& v) {
  return v.kind() == image::Vma::ANON_PRIVATE && !v.growsdown() && v.huge_page_size() == 0;
}

Status validate_inherited(const image::Mm& mm, const image::Mm* parent) {
  if (mm.inherited_size() == 0) return {};
  if (!parent) return Error(EINVAL, "pages are inherited from a parent that has no memory in the image");
  uint64_t prev_end = 0;
  size_t page_run = 0;
  for (const auto& run : mm.inherited()) {
    uint64_t end = run.addr() + run.npages() * kPage;
    if (run.npages() == 0 || run.npages() > (1ULL << 40) || run.addr() % kPage || end <= run.addr() ||
        run.addr() < prev_end)
      return Error(EINVAL, "inherited run at " + hex(run.addr()) + " is malformed or out of order");
    prev_end = end;
    // Inside one inheritable mapping of its own.
    bool inside = false;
    for (const auto& v : mm.vmas()) inside = inside || (inheritable(v) && run.addr() >= v.start() && end <= v.end());
    if (!inside) return Error(EINVAL, "inherited run at " + hex(run.addr()) + " lies outside a private anonymous mapping");
    if (!covered(*parent, run.addr(), end))
      return Error(EINVAL, "inherited run at " + hex(run.addr()) + " lies outside the parent's private anonymous mappings");
    // Apart from the pages stored for the process itself (both are sorted).
    while (page_run < static_cast<size_t>(mm.pages_size()) &&
           mm.pages(static_cast<int>(page_run)).addr() + mm.pages(static_cast<int>(page_run)).npages() * kPage <= run.addr())
      page_run++;
    if (page_run < static_cast<size_t>(mm.pages_size()) && mm.pages(static_cast<int>(page_run)).addr() < end)
      return Error(EINVAL, "inherited run at " + hex(run.addr()) + " overlaps stored pages");
  }
  return {};
}

Result<Premaps> Premaps::plan(const image::Tree& tree, const std::map<pid_t, image::Mm>& mms,
                              std::vector<std::pair<uint64_t, uint64_t>> taken) {
  std::set<std::pair<pid_t, int>> wanted;  // {parent, index of its mapping}
  for (const auto& t : tree.tasks()) {
    auto mm = mms.find(t.pid());
    if (mm == mms.end() || mm->second.inherited_size() == 0) continue;
    auto parent = mms.find(t.ppid());
    if (parent == mms.end()) return Error(EINVAL, pid_str(t.pid()) + " inherits pages from a parent without memory");
    const auto& vmas = parent->second.vmas();
    for (const auto& run : mm->second.inherited()) {
      uint64_t end = run.addr() + run.npages() * kPage;
      for (int i = 0; i < vmas.size(); i++)
        if (inheritable(vmas[i]) && vmas[i].start() < end && vmas[i].end() > run.addr()) wanted.insert({t.ppid(), i});
    }
  }
  Premaps out;
  for (const auto& [owner, index] : wanted) {
    const auto& v = mms.at(owner).vmas(index);
    uint64_t size = v.end() - v.start();
    // A page of room on each side keeps a region from merging with a
    // neighbour, so that its mapping is its own.
    uint64_t hole = find_hole(taken, size + 2 * kPage, 0x10000000);
    if (!hole) return Error(ENOMEM, "no room to build the shared memory of " + pid_str(owner));
    taken.emplace_back(hole, hole + size + 2 * kPage);
    out.regions_.push_back({owner, v.start(), v.end(), hole + kPage});
  }
  return out;
}

const PremapRegion* Premaps::find(pid_t owner, uint64_t addr) const {
  for (const auto& r : regions_)
    if (r.owner == owner && addr >= r.start && addr < r.end) return &r;
  return nullptr;
}

bool Premaps::reserved(uint64_t addr) const {
  for (const auto& r : regions_)
    if (addr >= r.at && addr < r.at + (r.end - r.start)) return true;
  return false;
}

Status Premaps::reserve() {
  for (const auto& r : regions_) {
    void* p = ::mmap(reinterpret_cast<void*>(r.at), r.end - r.start, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED) {
      release();
      return errno_error("reserving room for shared memory at " + hex(r.at));
    }
    reserved_ = true;
  }
  return {};
}

void Premaps::release() {
  if (!reserved_) return;
  for (const auto& r : regions_) ::munmap(reinterpret_cast<void*>(r.at), r.end - r.start);
  reserved_ = false;
}

Status Premaps::build(pid_t self, pid_t parent, const image::Mm& mm, const image::ImageDirReader& images) const {
  bool any = false;
  for (const auto& r : regions_) any = any || r.owner == self;
  if (!any) return {};
  CRYO_ASSIGN(std::string text, read_file("/proc/self/maps"));
  CRYO_ASSIGN(auto maps, proc::parse_maps(text));
  auto local_mremap = [](uint64_t from, uint64_t len, uint64_t to) -> Status {
    void* got = ::mremap(reinterpret_cast<void*>(from), len, len, MREMAP_MAYMOVE | MREMAP_FIXED, reinterpret_cast<void*>(to));
    if (got == MAP_FAILED) return errno_error("mremap " + hex(from) + " to " + hex(to));
    return {};
  };
  for (const auto& r : regions_) {
    if (r.owner != self) continue;
    const image::Vma* vma = nullptr;
    for (const auto& v : mm.vmas())
      if (v.start() == r.start) vma = &v;
    if (!vma) return Error(EINVAL, "no mapping at " + hex(r.start));
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | (vma->noreserve() ? MAP_NORESERVE : 0);
    if (::mmap(reinterpret_cast<void*>(r.at), r.end - r.start, PROT_READ | PROT_WRITE, flags, -1, 0) == MAP_FAILED)
      return errno_error("mmap of the shared memory at " + hex(r.start));
    // What it inherits from the parent's regions (already in place there) ...
    for (const auto& run : mm.inherited()) {
      uint64_t end = run.addr() + run.npages() * kPage;
      if (end <= r.start || run.addr() >= r.end) continue;
      for (uint64_t at = run.addr(); at < end;) {
        const PremapRegion* from = find(parent, at);
        if (!from) return Error(EINVAL, "the parent builds no memory at " + hex(at));
        uint64_t len = std::min(end, from->end) - at;
        CRYO_TRY(move_range(maps, from->at + (at - from->start), len, r.at + (at - r.start), local_mremap));
        at += len;
      }
    }
    // ... then its own pages.
    for (const auto& run : mm.pages()) {
      if (run.addr() < r.start || run.addr() >= r.end) continue;
      uint64_t bytes = run.npages() * kPage;
      if (run.remote()) {
        CRYO_ASSIGN(const uint8_t* src, fetched(self, run));
        std::memcpy(reinterpret_cast<void*>(r.at + (run.addr() - r.start)), src, bytes);
        continue;
      }
      // Checked here too: a lazy restore leaves the checks of private
      // anonymous runs to whoever writes them (slices of runs, a parent
      // image's or this image's, were checked whole when it was loaded).
      CRYO_ASSIGN(const uint8_t* src, run.checked() ? images.run_bytes(run)
                                                    : images.checked_page_run(run));
      std::memcpy(reinterpret_cast<void*>(r.at + (run.addr() - r.start)), src, bytes);
    }
  }
  return {};
}

void Premaps::add_fetched(pid_t owner, uint64_t addr, std::vector<uint8_t> bytes) {
  fetched_[{owner, addr}] = std::move(bytes);
}

Result<const uint8_t*> Premaps::fetched(pid_t owner, const image::PageRun& run) const {
  auto it = fetched_.find({owner, run.addr()});
  if (it == fetched_.end() || it->second.size() != run.npages() * kPage)
    return Error(EINVAL, pid_str(owner) + ": the pages at " + hex(run.addr()) + " were not fetched from the source");
  return it->second.data();
}

std::vector<const image::PageRun*> remote_runs_written_here(pid_t owner, const image::Mm& mm, const Premaps& premaps) {
  std::vector<const image::PageRun*> out;
  int vi = 0;
  for (const auto& run : mm.pages()) {
    if (!run.remote()) continue;
    while (vi < mm.vmas_size() && mm.vmas(vi).end() <= run.addr()) vi++;
    if (vi == mm.vmas_size()) break;
    const auto& v = mm.vmas(vi);
    bool inherits = false;
    for (const auto& in : mm.inherited()) inherits = inherits || (in.addr() >= v.start() && in.addr() < v.end());
    if (inherits || (premaps.find(owner, v.start()) && inheritable(v))) out.push_back(&run);
  }
  return out;
}

Status move_range(const std::vector<proc::MapEntry>& maps, uint64_t from, uint64_t len, uint64_t to,
                  const std::function<Status(uint64_t, uint64_t, uint64_t)>& mremap_fixed) {
  uint64_t end = from + len;
  uint64_t at = from;
  for (const auto& m : maps) {
    if (m.end <= at || m.start >= end) continue;
    if (m.start > at) break;
    uint64_t piece_end = std::min(m.end, end);
    CRYO_TRY(mremap_fixed(at, piece_end - at, to + (at - from)));
    at = piece_end;
    if (at >= end) break;
  }
  if (at < end) return Error(EFAULT, "memory to hand down is missing at " + hex(at));
  return {};
}

}  // namespace cryo::mm
