// MADV_GUARD_INSTALL guard regions (Linux 6.13): page-table markers that make
// a range fault like PROT_NONE without a VMA of their own, so /proc/PID/maps
// does not show them. Found with PAGEMAP_SCAN (PAGE_IS_GUARD) or, where that
// does not know them, the pagemap's PM_GUARD_REGION bit.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "core/sys/result.h"

namespace cryo::mm {

// The guard regions in [start, end) of the task whose pagemap is open at
// pagemap_fd, as [start, end) ranges.
Result<std::vector<std::pair<uint64_t, uint64_t>>> find_guard_regions(int pagemap_fd, uint64_t start, uint64_t end);

}  // namespace cryo::mm
