// The container's filesystem view, built inside its new mount namespace:
// mounts, devices, pivot_root, masked and read-only paths.
#pragma once

#include <string>
#include <vector>

#include "core/sys/result.h"
#include "oci/config.h"

namespace cryo::oci {

struct MountFlags {
  unsigned long flags = 0;        // MS_* for mount(2)
  unsigned long clear = 0;        // flags an option turned off (rw, suid, ...)
  unsigned long propagation = 0;  // MS_SHARED/MS_SLAVE/MS_PRIVATE/MS_UNBINDABLE (| MS_REC)
  bool bind = false, recursive = false;
  bool tmpcopyup = false;  // a tmpfs starts with the contents of the directory it covers
  std::string data;  // options the filesystem itself parses ("mode=755,size=65536k")
};

// Parses mount options; unknown ones become filesystem data.
Result<MountFlags> parse_mount_options(const std::vector<std::string>& options);
Result<unsigned long> parse_propagation(const std::string& name);

struct RootfsContext {
  const Spec* spec = nullptr;
  std::string cgroup_path;  // the container's cgroup, for cgroup mounts
  bool in_user_ns = false;
  bool new_cgroup_ns = false;
};

// Before pivot_root, with the working directory at the rootfs (stage A put it
// there): propagation, bind of the rootfs, the spec's mounts, devices.
Status prepare_rootfs(const RootfsContext& ctx);
// Creates a mount point (a path already resolved inside the rootfs) unless
// something is there: a directory, or an empty file when a file is bind-mounted.
Status make_mount_point(const std::string& target, bool file);
// pivot_root (or MS_MOVE + chroot with no_pivot) into the rootfs that
// prepare_rootfs left as the working directory.
Status enter_rootfs(bool no_pivot);
// After pivot_root: /dev links, masked and read-only paths, read-only root.
Status finish_rootfs(const RootfsContext& ctx);

}  // namespace cryo::oci
