// Directories, FIFOs and device nodes removed while open ("ghosts" without
// data): made again at their old path, opened, and removed again, so that
// /proc shows the same "PATH (deleted)".
#pragma once

#include <string>

#include "core/image/proto/files.pb.h"
#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::files {

// `path` (absolute) looked up under `root` (an O_PATH fd of the root of the
// tree's own mount namespace), which neither ".." nor an absolute symlink
// leaves: the tree's names are the tree's. With root -1, cryo's own lookup.
Result<UniqueFd> open_in_root(int root, const std::string& path, int flags);

// The ghost of `content` (a directory, FIFO or device node by its mode):
// a directory is returned open O_RDONLY, any other node O_PATH; either is
// reopened through /proc/self/fd as each description wants. Its path is
// looked up under `root` (an O_PATH fd of the root of the tree's own mount
// namespace), or under cryo's own root when it is -1.
Result<UniqueFd> make_ghost_node(const image::Content& content, int root = -1);

}  // namespace cryo::files
