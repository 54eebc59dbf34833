// Dumping an address space: its mappings and the pages only memory holds.
#pragma once

#include <sys/types.h>

#include <vector>

#include "core/files/files_dump.h"
#include "core/image/image.h"
#include "core/image/proto/mm.pb.h"
#include "core/sys/proc.h"

namespace cryo::mm {

struct DumpStats {
  uint64_t pages_scanned = 0;
  uint64_t pages_written = 0;
  uint64_t zero_pages_skipped = 0;
};

// The data segments (SEEK_DATA) of a file up to size, as page runs whose addr
// is the offset; all-zero pages are left out like holes.
Status dump_file_data(int fd, uint64_t size, google::protobuf::RepeatedPtrField<image::PageRun>* runs,
                      image::PageWriter& pages, DumpStats* stats);

Status dump_mm(pid_t pid, const std::vector<proc::MapEntry>& maps, files::FilesDump& files,
               image::PageWriter& pages, image::Mm* out, DumpStats* stats);

}  // namespace cryo::mm
