// Reading a whole image and checking everything a restore will trust: the
// framing and checksums of every file, every page run, and the consistency of
// the tree, the mappings and the fd tables.
#pragma once

#include <sys/types.h>

#include <map>

#include "core/image/image.h"
#include "core/image/proto/files.pb.h"
#include "core/image/proto/mm.pb.h"
#include "core/image/proto/task.pb.h"
#include "core/image/proto/tree.pb.h"

namespace cryo {

struct LoadedImage {
  image::Tree tree;
  image::Files files;
  std::map<pid_t, image::Process> cores;  // living processes only
  std::map<pid_t, image::Mm> mms;
};

// lazy: the page runs of mappings that may come lazily (mm::can_be_lazy)
// are not checked here; whoever writes them checks them (the lazy-pages
// daemon, or the restore for those it writes itself).
Result<LoadedImage> load_image(const image::ImageDirReader& reader, bool lazy = false);

}  // namespace cryo
