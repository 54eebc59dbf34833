// Directories, FIFOs and device nodes removed while open ("ghosts" without
// data): made again at their old path, opened, and removed again, so that
// /proc shows the same "PATH (deleted)".
#pragma once

#include "core/image/proto/files.pb.h"
#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::files {

// The ghost of `content` (a directory, FIFO or device node by its mode):
// a directory is returned open O_RDONLY, any other node O_PATH; either is
// reopened through /proc/self/fd as each description wants.
Result<UniqueFd> make_ghost_node(const image::Content& content);

}  // namespace cryo::files
