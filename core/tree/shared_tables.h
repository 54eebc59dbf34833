// Process-wide kernel objects two processes of the tree may share without
// sharing memory: an fd table (clone with CLONE_FILES) and a filesystem
// context (CLONE_FS: cwd, root and umask). Found with kcmp.
#pragma once

#include "core/sys/result.h"
#include "core/tree/freeze.h"

namespace cryo::tree {

// Fails, naming both pids, when two processes share an fd table or a
// filesystem context: the restore would give each its own, and an fd one
// opens (or a chdir) would no longer be seen by the other.
Status check_shared_tables(const FrozenTree& tree);

}  // namespace cryo::tree
