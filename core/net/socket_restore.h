// Recreating sockets: listeners bound and listening again, established TCP
// connections rebuilt in repair mode with their sequence numbers, windows,
// options and queued bytes.
#pragma once

#include "core/image/proto/files.pb.h"
#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::net {

Result<UniqueFd> open_socket(const image::FileDesc& f);

}  // namespace cryo::net
