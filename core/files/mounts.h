// Finding a mount point of this mount namespace by what the kernel says of a
// file or a mark: a filesystem's dev_t, or a mount's id.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cryo::files {

// One line of /proc/PID/mountinfo, unescaped.
struct MountInfo {
  uint32_t id = 0, parent = 0;
  std::string dev;  // "major:minor"
  std::string root, mount_point, mount_options;
  std::vector<std::string> tags;  // optional fields: shared:N, master:N, propagate_from:N, unbindable
  std::string fstype, source, super_options;
};
std::vector<MountInfo> parse_mountinfo(std::string_view text);

// A mount point of the filesystem whose kernel dev_t (major << 20 | minor) is
// sdev, preferring a mount of its root; "" if none.
std::string mount_of_dev(uint32_t sdev);
// The mount point of the mount whose id (mountinfo's first field) is
// mnt_id in `mountinfo` (a /proc/PID/mountinfo text); "" if none.
std::string mount_of_id(std::string_view mountinfo, uint64_t mnt_id);

}  // namespace cryo::files
