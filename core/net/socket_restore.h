// Recreating sockets: listeners bound and listening again, established TCP
// connections rebuilt in repair mode with their sequence numbers, windows,
// options and queued bytes.
#pragma once

#include <functional>
#include <map>

#include "core/image/proto/files.pb.h"
#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::net {

// Every socket of files.img, by file id: created, bound, connected (unix
// pairs to each other), their queues refilled, then shut down as recorded.
// Only the sockets `wanted` accepts are made (both ends of a pair together).
Status open_sockets(const image::Files& files, const std::function<bool(uint32_t id)>& wanted,
                    std::map<uint32_t, UniqueFd>* out);

}  // namespace cryo::net
