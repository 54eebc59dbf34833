#include "core/files/fd_zone.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <string>

namespace cryo::files {

Result<UniqueFd> FdZone::copy(int fd) const {
  int placed = ::fcntl(fd, F_DUPFD_CLOEXEC, begin);
  if (placed < 0) {
    if (errno == EMFILE || errno == EINVAL)
      return Error(EMFILE, "no fd number is free for the restorer from " + std::to_string(begin) +
                               " up to its fd limit (RLIMIT_NOFILE)");
    return errno_error("F_DUPFD from " + std::to_string(begin));
  }
  UniqueFd out(placed);
  if (placed >= end)
    return Error(EMFILE, "no fd number is free for the restorer between " + std::to_string(begin) + " and " +
                             std::to_string(end) + " (the image's processes use the numbers on either side)");
  return out;
}

Result<FdZone> fd_zone(const std::vector<const image::Process*>& cores, int limit, int needed) {
  // stdio stays out of the zone: the restorer's own is open there.
  constexpr int kFirst = 3;
  // Above the highest recorded fd, a few numbers are left between (as
  // ever): an fd a process opens right after the restore lands there.
  constexpr int kAboveMargin = 8;
  std::vector<int> used;
  for (const auto* core : cores) {
    if (!core) continue;
    for (const auto& fd : core->fds()) {
      if (fd.fd() >= limit)
        return Error(EMFILE, "pid " + std::to_string(core->pid()) + " fd " + std::to_string(fd.fd()) +
                                 ": above this host's fd limit for the restorer (RLIMIT_NOFILE " +
                                 std::to_string(limit) + ")");
      used.push_back(fd.fd());
    }
  }
  std::sort(used.begin(), used.end());
  used.erase(std::unique(used.begin(), used.end()), used.end());
  int top = std::max(kFirst, used.empty() ? 0 : used.back() + 1) + kAboveMargin;
  if (limit - top >= needed) return FdZone{top, INT_MAX};
  // The widest run of free numbers; the one up to the limit has no end.
  FdZone best{kFirst, kFirst};
  int from = kFirst;
  auto consider = [&](int to) {
    if (to - from > best.end - best.begin) best = {from, to};
  };
  for (int fd : used) {
    if (fd < kFirst) continue;
    consider(fd);
    from = fd + 1;
  }
  consider(limit);
  if (best.end == limit) best.end = INT_MAX;
  return best;
}

}  // namespace cryo::files
