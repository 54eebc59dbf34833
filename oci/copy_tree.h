// Copying a directory tree (tmpcopyup: a tmpfs mounted over an image
// directory starts with that directory's contents).
#pragma once

#include <string>

#include "core/sys/result.h"

namespace cryo::oci {

// Copies everything under the directory open as src_dir into the existing
// directory dst: files, directories, symlinks, fifos and device nodes, with
// their modes and owners; dst itself takes src's mode and owner.
Status copy_tree(int src_dir, const std::string& dst);

}  // namespace cryo::oci
