#include "core/mm/parent_images.h"

#include <unistd.h>

#include <algorithm>
#include <set>
#include <utility>

#include "core/sys/io.h"

namespace cryo::mm {
namespace {

constexpr uint64_t kPage = 4096;

// Whether addr lies in one of the sorted ranges; `at` is where the last
// lookup ended, walked forward from there (or searched again when addr is
// behind it).
bool inside(const Ranges& ranges, uint64_t addr, size_t& at) {
  if (at >= ranges.size() || addr < ranges[at].first) {
    auto it = std::upper_bound(ranges.begin(), ranges.end(), std::make_pair(addr, ~uint64_t{0}));
    if (it == ranges.begin()) {
      at = 0;
      return false;
    }
    at = static_cast<size_t>(std::prev(it) - ranges.begin());
  }
  while (at + 1 < ranges.size() && ranges[at + 1].first <= addr) at++;
  return addr >= ranges[at].first && addr < ranges[at].second;
}

std::string hex(uint64_t v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%lx", static_cast<unsigned long>(v));
  return buf;
}

}  // namespace

IncrementalMm::IncrementalMm(const image::Mm& earlier, Ranges unchanged, uint32_t level, Ranges zero)
    : unchanged_(std::move(unchanged)), zero_(std::move(zero)) {
  std::sort(unchanged_.begin(), unchanged_.end());
  std::sort(zero_.begin(), zero_.end());
  // Reserved: moving a Source moves its PageRun (a message), and the frozen
  // dump builds these for every process the copy holds.
  size_t count = static_cast<size_t>(earlier.pages_size());
  for (const auto& p : earlier.parent_pages()) count += static_cast<size_t>(p.slices_size());
  sources_.reserve(count);
  for (const auto& run : earlier.pages())
    sources_.push_back({run.addr(), run.addr() + run.npages() * kPage, level, run});
  for (const auto& p : earlier.parent_pages())
    for (const auto& s : p.slices())
      sources_.push_back({s.addr(), s.addr() + s.npages() * kPage, p.level() + level, p.run()});
  std::sort(sources_.begin(), sources_.end(), [](const Source& a, const Source& b) { return a.start < b.start; });
}

IncrementalMm::Taken IncrementalMm::take(uint64_t addr, image::Mm* out, Cursor& at) const {
  if (!inside(unchanged_, addr, at.unchanged)) return Taken::kNo;
  if (inside(zero_, addr, at.zero)) return Taken::kZero;
  if (at.source >= sources_.size() || addr < sources_[at.source].start) {
    auto it = std::upper_bound(sources_.begin(), sources_.end(), addr,
                               [](uint64_t a, const Source& s) { return a < s.start; });
    if (it == sources_.begin()) return Taken::kNo;
    at.source = static_cast<size_t>(std::prev(it) - sources_.begin());
  }
  while (at.source + 1 < sources_.size() && sources_[at.source + 1].start <= addr) at.source++;
  const Source& src = sources_[at.source];
  if (addr >= src.end) return Taken::kNo;
  add_slice(src, addr, 1, out);
  return Taken::kStored;
}

void IncrementalMm::add_slice(const Source& src, uint64_t addr, uint64_t npages, image::Mm* out) {
  auto* entries = out->mutable_parent_pages();
  image::ParentPages* last = entries->empty() ? nullptr : &(*entries)[entries->size() - 1];
  if (!last || last->level() != src.level || image::place_of(last->run()) != image::place_of(src.run)) {
    last = entries->Add();
    last->set_level(src.level);
    *last->mutable_run() = src.run;
  }
  auto* slices = last->mutable_slices();
  if (!slices->empty()) {
    auto& s = (*slices)[slices->size() - 1];
    if (s.addr() + s.npages() * kPage == addr) {
      s.set_npages(s.npages() + npages);
      return;
    }
  }
  auto* s = slices->Add();
  s->set_addr(addr);
  s->set_npages(npages);
}

uint64_t IncrementalMm::take_range(uint64_t start, uint64_t end, image::Mm* out, Ranges* zero, Ranges* rest) const {
  auto append = [](Ranges* to, uint64_t s, uint64_t e) {
    if (s >= e) return;
    if (!to->empty() && to->back().second == s)
      to->back().second = e;
    else
      to->emplace_back(s, e);
  };
  uint64_t taken = 0;
  Ranges range = {{start, end}};
  Ranges unchanged = intersect(range, unchanged_);
  Ranges none = subtract(range, unchanged);  // pieces of rest, in order once sorted
  Ranges zero_here = intersect(unchanged, zero_);
  for (const auto& z : zero_here) append(zero, z.first, z.second);
  for (const auto& [s, e] : subtract(unchanged, zero_here)) {
    // The sources holding [s, e) (disjoint, sorted); what none holds is rest.
    auto it = std::upper_bound(sources_.begin(), sources_.end(), s,
                               [](uint64_t a, const Source& src) { return a < src.start; });
    if (it != sources_.begin()) --it;
    uint64_t at = s;
    for (; it != sources_.end() && it->start < e && at < e; ++it) {
      if (it->end <= at) continue;
      uint64_t from = std::max(at, it->start), to = std::min(e, it->end);
      if (from > at) none.emplace_back(at, from);
      add_slice(*it, from, (to - from) / kPage, out);
      taken += (to - from) / kPage;
      at = to;
    }
    if (at < e) none.emplace_back(at, e);
  }
  std::sort(none.begin(), none.end());
  for (const auto& r : none) append(rest, r.first, r.second);
  return taken;
}

Status expand_parent_pages(const image::ImageDirReader& reader, image::Mm* mm) {
  for (const auto& run : mm->pages())
    if (run.level() != 0 || run.checked())
      return Error(EINVAL, "page run at " + hex(run.addr()) + " names a level (corrupt)");
  if (mm->parent_pages_size() == 0) return {};
  std::set<std::pair<uint32_t, image::RunPlace>> checked;  // level, where
  std::vector<image::PageRun> runs(mm->pages().begin(), mm->pages().end());
  // A slice goes across a boundary of the image's mappings where a mapping
  // was split since its run was stored (an mprotect of part of it): the
  // restore writes each mapping's pages by itself, so the slice becomes a
  // run per mapping.
  std::vector<uint64_t> bounds;
  for (const auto& v : mm->vmas()) {
    bounds.push_back(v.start());
    bounds.push_back(v.end());
  }
  std::sort(bounds.begin(), bounds.end());
  for (const auto& p : mm->parent_pages()) {
    const auto& run = p.run();
    std::string what = "pages of parent image " + std::to_string(p.level()) + " at " + hex(run.addr());
    const image::ImageDirReader* at = reader.level(p.level());  // 0: this image
    if (!at) return Error(EINVAL, what + ": the chain of parents has " + std::to_string(reader.depth()) + " images");
    if (run.npages() == 0 || run.npages() > (1ULL << 40) / kPage || run.addr() % kPage ||
        run.addr() + run.npages() * kPage < run.addr())
      return Error(EINVAL, what + ": a malformed run");
    if (checked.insert({p.level(), image::place_of(run)}).second)
      CRYO_TRY(at->checked_page_run(run).wrap(at->dir() + ": " + what));
    uint64_t end = run.addr() + run.npages() * kPage;
    for (const auto& s : p.slices()) {
      if (s.npages() == 0 || s.addr() % kPage || s.addr() < run.addr() || s.npages() > run.npages() ||
          s.addr() + s.npages() * kPage > end)
        return Error(EINVAL, what + ": a slice lies outside its run");
      uint64_t from = s.addr(), to = s.addr() + s.npages() * kPage;
      for (auto b = bounds.begin(); from < to;) {
        b = std::upper_bound(b, bounds.end(), from);
        uint64_t cut = b != bounds.end() && *b < to ? *b : to;
        image::PageRun r;
        r.set_addr(from);
        r.set_npages((cut - from) / kPage);
        r.set_file(run.file());
        r.set_offset(run.offset() + (from - run.addr()));
        r.set_level(p.level());
        r.set_xxh3(run.xxh3());
        r.set_checked(true);
        runs.push_back(r);
        from = cut;
      }
    }
  }
  std::sort(runs.begin(), runs.end(), [](const auto& a, const auto& b) { return a.addr() < b.addr(); });
  for (size_t i = 1; i < runs.size(); i++)
    if (runs[i - 1].addr() + runs[i - 1].npages() * kPage > runs[i].addr())
      return Error(EINVAL, "pages at " + hex(runs[i].addr()) + " are stored twice (in this image and a parent)");
  mm->clear_pages();
  for (auto& r : runs) *mm->add_pages() = std::move(r);
  mm->clear_parent_pages();
  return {};
}

Result<ParentImage> ParentImage::open(const std::string& images_dir, const std::string& path) {
  ParentImage p;
  p.path = path;
  std::string dir = path.starts_with("/") ? path : images_dir + "/" + path;
  auto reader = image::ImageDirReader::open(dir);
  if (!reader.ok()) return std::move(reader).error().wrap("--prev-images-dir " + path);
  if (!reader->inventory().pages_only())
    return Error(EINVAL, "--prev-images-dir " + path + ": " + dir + " is not a pre-dump image (make it with cryo pre-dump)");
  CRYO_ASSIGN(p.inventory_xxh3, image::file_checksum(dir + "/" + image::kInventoryName));
  p.reader = std::make_unique<image::ImageDirReader>(std::move(*reader));
  return p;
}

std::optional<image::Mm> ParentImage::mm_of(pid_t pid) const {
  image::Mm mm;
  if (!reader->has(image::mm_name(pid)) || !reader->read(image::mm_name(pid), image::Kind::kMm, &mm).ok())
    return std::nullopt;
  return mm;
}

void ParentImage::name_in(image::Inventory* inventory) const {
  inventory->set_parent_image(path);
  inventory->set_parent_inventory_xxh3(inventory_xxh3);
}

Status ParentImage::link_from(const std::string& images_dir) const {
  std::string link = images_dir + "/parent";
  ::unlink(link.c_str());
  if (::symlink(path.c_str(), link.c_str()) < 0) return errno_error("symlink " + link);
  return {};
}

}  // namespace cryo::mm
