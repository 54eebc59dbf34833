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
// sdev, preferring a mount of its root; "" if none. In cryo's mount namespace,
// or in the one whose mountinfo (/proc/PID/mountinfo) is given.
std::string mount_of_dev(uint32_t sdev, const std::string& mountinfo = "/proc/self/mountinfo");
// Every mount point of it, those of its root first.
std::vector<std::string> mounts_of_dev(uint32_t sdev, const std::string& mountinfo = "/proc/self/mountinfo");
// Where a tree of its own mount namespace finds a file of the filesystem sdev
// by a file handle, and whether the restore makes that filesystem anew: one
// cryo's namespace does not have mounted is one the tree made itself (a
// tmpfs, its own proc), whose inodes will be new; one it has (the root, a
// volume) keeps them. tree_root is "/proc/PID/root"; mount_points are the
// tree's names of its mounts (mounts_of_dev), maybe none. An empty tree_root
// is a tree in cryo's own mount namespace: cryo's names, nothing made anew.
struct TreeMount {
  std::vector<std::string> mount_points;
  bool made_again = false;
};
TreeMount tree_mount_of_dev(uint32_t sdev, const std::string& tree_root);
// The kernel's dev_t (major << 20 | minor) of a user-space one.
uint32_t kernel_dev(uint64_t st_dev);
// The mount point of the mount whose id (mountinfo's first field) is
// mnt_id in `mountinfo` (a /proc/PID/mountinfo text); "" if none.
std::string mount_of_id(std::string_view mountinfo, uint64_t mnt_id);

}  // namespace cryo::files
