// Kernel ABI newer than Debian 12's headers: asynchronous userfaultfd
// write-protection (Linux 6.7) and the PAGEMAP_SCAN ioctl (Linux 6.7).
#pragma once

#include <linux/types.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

namespace cryo::mm::abi {

constexpr __u64 kUffdFeatureWpUnpopulated = 1 << 13;
constexpr __u64 kUffdFeatureWpAsync = 1 << 15;

constexpr __u64 kPageIsWritten = 1 << 1;
constexpr __u64 kPageIsFile = 1 << 2;
constexpr __u64 kPageIsPresent = 1 << 3;
constexpr __u64 kPageIsSwapped = 1 << 4;
constexpr __u64 kPmScanWpMatching = 1 << 0;
constexpr __u64 kPmScanCheckWpAsync = 1 << 1;

struct PageRegion {
  __u64 start, end, categories;
};

struct PmScanArg {
  __u64 size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted, category_mask,
      category_anyof_mask, return_mask;
};

constexpr unsigned long kPagemapScan = _IOWR('f', 16, PmScanArg);

}  // namespace cryo::mm::abi
