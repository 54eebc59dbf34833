// Which devices cryo reopens by their path (or, deleted, makes again with
// mknod and opens): those whose open file holds nothing of its own that a
// fresh open would lack. Terminals are not decided here (see files_dump).
#pragma once

#include <sys/types.h>

#include <string>

namespace cryo::files {

// "" when a fresh open of the device (character or block, by `mode`) with
// `open_flags` is what the process had; otherwise why not, to be shown
// after the device's name.
std::string device_refusal(mode_t mode, dev_t rdev, int open_flags);

}  // namespace cryo::files
