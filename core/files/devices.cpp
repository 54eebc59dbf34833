#include "core/files/devices.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <array>
#include <string_view>

#include "core/sys/io.h"

namespace cryo::files {
namespace {

constexpr unsigned kMemMajor = 1, kMiscMajor = 10, kKmsgMinor = 11;

// Misc devices (major 10; most minors are given out at boot, so they are
// known by name) whose open file is only a handle on the driver: each ioctl
// or read stands alone.
constexpr std::array<std::string_view, 7> kStatelessMisc = {
    "loop-control", "btrfs-control", "device-mapper", "autofs", "hwrng", "userfaultfd", "vsock"};

// The name the kernel gives a misc device (/sys/dev/char/10:N -> .../misc/NAME).
std::string misc_name(dev_t rdev) {
  auto link = read_link("/sys/dev/char/" + std::to_string(major(rdev)) + ":" + std::to_string(minor(rdev)));
  if (!link.ok()) return "";
  return link->substr(link->rfind('/') + 1);
}

}  // namespace

std::string device_refusal(mode_t mode, dev_t rdev, int open_flags) {
  if (S_ISBLK(mode)) return "";  // a block device's open file holds only its offset
  if (!S_ISCHR(mode)) return "is not a device";
  unsigned maj = major(rdev), min = minor(rdev);
  if (maj == kMemMajor) {
    if (min == kKmsgMinor && (open_flags & O_ACCMODE) != O_WRONLY)
      return "is read from: where its reader is in the kernel log cannot be saved";
    return "";
  }
  if (maj == kMiscMajor) {
    std::string name = misc_name(rdev);
    if (std::find(kStatelessMisc.begin(), kStatelessMisc.end(), name) != kStatelessMisc.end()) return "";
    if (name == "tun") return "is a tun/tap device: the interface attached to it cannot be saved";
    if (name == "fuse") return "is a FUSE connection: the filesystem it serves cannot be saved";
    if (name == "kvm") return "is KVM: virtual machines cannot be saved";
    return "(misc device " + (name.empty() ? std::to_string(min) : name) +
           ") may hold state of its own that a new open would lack";
  }
  return "may hold state of its own that a new open would lack (cryo reopens the memory devices, "
         "block devices and some misc devices)";
}

}  // namespace cryo::files
