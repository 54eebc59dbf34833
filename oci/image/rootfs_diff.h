// What a container changed in its root filesystem, packed beside its
// checkpoint as Podman packs it: rootfs-diff.tar (every file and directory the
// container added or changed, relative to the rootfs) and deleted.files (a
// JSON array of the absolute paths it removed, "/etc/group"). A restore
// removes the deleted paths and unpacks the diff over the new bundle's rootfs
// before any process comes back.
//
// cryo finds the changes when the rootfs is an overlay mount: its upper
// directory holds them (whiteouts are deletions, an opaque directory hides
// what its lower layers held there). Any other rootfs has no base to compare
// with: nothing is packed, and the restore uses the bundle's rootfs as it is
// (runc's behaviour).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/sys/result.h"

namespace cryo::oci::image {

constexpr const char* kRootfsDiffTar = "rootfs-diff.tar";
constexpr const char* kDeletedFiles = "deleted.files";

// The layers of the overlay mounted at rootfs, or nothing when rootfs is not
// the mount point of an overlay.
struct OverlayLayers {
  std::string upper;
  std::vector<std::string> lowers;  // top first
};
Result<std::optional<OverlayLayers>> overlay_at(const std::string& rootfs);

// Writes rootfs-diff.tar and deleted.files into dir for the container whose
// rootfs is rootfs; returns the names written (none when rootfs is no overlay
// or nothing changed).
Result<std::vector<std::string>> write_rootfs_diff(const std::string& rootfs, const std::string& dir);

// Applies the rootfs-diff.tar and deleted.files found in dir (either may be
// missing) over rootfs: the deleted paths are removed, then the diff is
// unpacked with its owners, modes, times and extended attributes. Both run in
// a child chrooted into rootfs, so no name or symlink of a hostile image can
// reach outside it; an entry naming an absolute path or `..` refuses the
// diff, naming it.
Status apply_rootfs_diff(const std::string& dir, const std::string& rootfs);

}  // namespace cryo::oci::image
