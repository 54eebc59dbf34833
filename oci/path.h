// Paths inside a container's rootfs, resolved as the container would see them:
// symlinks (absolute or with "..") never lead out of the rootfs.
#pragma once

#include <string>

#include "core/sys/result.h"

namespace cryo::oci {

// rootfs + path with every symlink in path resolved relative to rootfs.
// Components that do not exist yet are kept as written.
Result<std::string> secure_join(const std::string& rootfs, const std::string& path);

}  // namespace cryo::oci
