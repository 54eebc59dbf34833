// Process-wide kernel objects two processes of the tree may share without
// sharing memory: an fd table (clone with CLONE_FILES) and a filesystem
// context (CLONE_FS: cwd, root and umask). Found with kcmp.
#pragma once

#include <set>

#include "core/sys/result.h"
#include "core/tree/freeze.h"

namespace cryo::tree {

// The processes whose fd table or filesystem context is their parent's:
// the restore clones them with CLONE_FILES or CLONE_FS again.
struct SharedTables {
  std::set<pid_t> files_of_parent;
  std::set<pid_t> fs_of_parent;
};

// Finds who shares what. Sharing that a clone from the parent cannot make
// again fails, naming two pids: siblings sharing a table their parent no
// longer has (it unshared it after cloning them).
Result<SharedTables> find_shared_tables(const FrozenTree& tree);

}  // namespace cryo::tree
