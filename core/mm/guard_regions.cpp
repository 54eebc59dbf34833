#include "core/mm/guard_regions.h"

#include <errno.h>
#include <sys/ioctl.h>

#include <algorithm>

#include "core/sys/io.h"

namespace cryo::mm {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kGuardBit = 1ULL << 58;  // PM_GUARD_REGION in /proc/PID/pagemap (Linux 6.14)

// <linux/fs.h> of Linux 6.7+, newer than Debian's headers.
struct PageRegion {
  uint64_t start, end, categories;
};
struct PmScanArg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted, category_mask,
      category_anyof_mask, return_mask;
};
constexpr unsigned long kPagemapScan = _IOWR('f', 16, PmScanArg);
constexpr uint64_t kPageIsGuard = 1 << 8;

void add(std::vector<std::pair<uint64_t, uint64_t>>& out, uint64_t start, uint64_t end) {
  if (!out.empty() && out.back().second == start)
    out.back().second = end;
  else
    out.emplace_back(start, end);
}

// One pagemap entry per page: slower, but the same answer on kernels whose
// PAGEMAP_SCAN predates PAGE_IS_GUARD.
Status scan_pagemap(int fd, uint64_t start, uint64_t end, std::vector<std::pair<uint64_t, uint64_t>>& out) {
  constexpr uint64_t kChunk = 4096;
  std::vector<uint64_t> entries(kChunk);
  for (uint64_t at = start; at < end; at += kChunk * kPage) {
    size_t count = static_cast<size_t>(std::min<uint64_t>(kChunk, (end - at) / kPage));
    CRYO_TRY(pread_all(fd, entries.data(), count * 8, static_cast<off_t>(at / kPage * 8)).wrap("read pagemap"));
    for (size_t k = 0; k < count; k++)
      if (entries[k] & kGuardBit) add(out, at + k * kPage, at + (k + 1) * kPage);
  }
  return {};
}

}  // namespace

Result<std::vector<std::pair<uint64_t, uint64_t>>> find_guard_regions(int pagemap_fd, uint64_t start, uint64_t end) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  std::vector<PageRegion> regions(64);
  for (uint64_t at = start; at < end;) {
    PmScanArg arg{};
    arg.size = sizeof arg;
    arg.start = at;
    arg.end = end;
    arg.vec = reinterpret_cast<uint64_t>(regions.data());
    arg.vec_len = regions.size();
    arg.category_mask = kPageIsGuard;
    arg.return_mask = kPageIsGuard;
    long n = ::ioctl(pagemap_fd, kPagemapScan, &arg);
    if (n < 0 && (errno == EINVAL || errno == ENOTTY)) {
      CRYO_TRY(scan_pagemap(pagemap_fd, at, end, out));
      return out;
    }
    if (n < 0) return errno_error("PAGEMAP_SCAN for guard regions");
    for (long i = 0; i < n; i++) add(out, regions[static_cast<size_t>(i)].start, regions[static_cast<size_t>(i)].end);
    if (arg.walk_end <= at) return Error(EIO, "PAGEMAP_SCAN made no progress");
    at = arg.walk_end;
  }
  return out;
}

}  // namespace cryo::mm
