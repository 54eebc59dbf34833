// The pages of one address space still to be copied in by the lazy-pages
// daemon: runs of consecutive pages, each with where its bytes are.
#pragma once

#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <vector>

namespace cryo::lazy {

constexpr uint64_t kPage = 4096;

struct PageSpan {
  uint64_t addr = 0;
  uint64_t npages = 0;
  const uint8_t* src = nullptr;  // npages * kPage bytes; null for a remote span
  // A remote span (a lazy migration): the bytes are at from_addr in process
  // from_pid of the image, served by the source.
  int32_t from_pid = 0;
  uint64_t from_addr = 0;

  // The span without its first `pages` pages.
  PageSpan after(uint64_t pages) const {
    return {addr + pages * kPage, npages - pages, src ? src + pages * kPage : nullptr, from_pid,
            from_pid ? from_addr + pages * kPage : 0};
  }
};

class PendingPages {
 public:
  void add(PageSpan span) {
    if (span.npages == 0) return;
    erase(span.addr, span.addr + span.npages * kPage);
    pages_ += span.npages;
    runs_[span.addr] = span;
  }
  bool empty() const { return runs_.empty(); }
  uint64_t pages() const { return pages_; }

  // Takes up to max_pages pending pages starting at addr (none if addr is
  // not pending).
  std::optional<PageSpan> take(uint64_t addr, uint64_t max_pages) {
    split_at(addr);
    auto it = runs_.find(addr);
    if (it == runs_.end()) return std::nullopt;
    split_at(addr + std::min(max_pages, it->second.npages) * kPage);
    PageSpan out = it->second;
    runs_.erase(it);
    pages_ -= out.npages;
    return out;
  }
  // The first pending run, cut to max_pages.
  std::optional<PageSpan> take_first(uint64_t max_pages) {
    if (runs_.empty()) return std::nullopt;
    return take(runs_.begin()->first, max_pages);
  }
  // Up to `most` runs of at most max_pages pages (left pending).
  std::vector<PageSpan> short_runs(uint64_t max_pages, size_t most) const {
    std::vector<PageSpan> out;
    for (auto it = runs_.begin(); it != runs_.end() && out.size() < most; ++it)
      if (it->second.npages <= max_pages) out.push_back(it->second);
    return out;
  }
  // Pages put back (a copy that could not be made yet).
  void put_back(PageSpan span) { add(span); }

  // Forgets the pending pages in [start, end): they are gone or zero now.
  void erase(uint64_t start, uint64_t end) { (void)extract(start, end); }

  // Removes and returns the pending pages in [start, end).
  std::vector<PageSpan> extract(uint64_t start, uint64_t end) {
    std::vector<PageSpan> out;
    if (start >= end) return out;
    split_at(start);
    split_at(end);
    for (auto it = runs_.lower_bound(start); it != runs_.end() && it->first < end;) {
      out.push_back(it->second);
      pages_ -= it->second.npages;
      it = runs_.erase(it);
    }
    return out;
  }

 private:
  // Splits the run that covers addr (strictly inside it) in two.
  void split_at(uint64_t addr) {
    auto it = runs_.upper_bound(addr);
    if (it == runs_.begin()) return;
    --it;
    PageSpan& run = it->second;
    uint64_t end = run.addr + run.npages * kPage;
    if (addr <= run.addr || addr >= end) return;
    uint64_t head = (addr - run.addr) / kPage;
    PageSpan tail = run.after(head);
    run.npages = head;
    runs_[addr] = tail;
  }

  std::map<uint64_t, PageSpan> runs_;
  uint64_t pages_ = 0;
};

}  // namespace cryo::lazy
