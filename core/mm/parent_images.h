// Incremental images: a dump (or pre-dump) made against a parent image
// stores only the pages written since the parent was taken, and names the
// others in the chain of parents (Mm.parent_pages); the restore reads them
// there, each parent run checked against its own checksum.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/image/image.h"
#include "core/image/proto/mm.pb.h"
#include "core/mm/tracking.h"

namespace cryo::mm {

// One process's view of its parent image while it is dumped.
class IncrementalMm {
 public:
  // parent_mm: the process's memory in the parent image; unchanged: the
  // ranges whose pages nobody wrote since (tracked and still trusted).
  IncrementalMm(const image::Mm& parent_mm, Ranges unchanged);
  IncrementalMm() = default;

  // Whether the page at addr is unchanged and the chain holds it; then
  // appends it to out's parent_pages (pages come in address order).
  bool take(uint64_t addr, image::Mm* out) const;

  // Set by pre-dump, whose own userfaultfd registers the mappings: their
  // VmFlags show it (um/uw) and are no reason to refuse them.
  bool registered_by_cryo = false;

 private:
  struct Source {
    uint64_t start, end;  // the pages this source holds
    uint32_t level;       // in the chain of the image being written (1: its parent)
    image::PageRun run;   // as stored at that level
  };
  Ranges unchanged_;
  std::vector<Source> sources_;  // sorted by start
};

// The restore's side: turns every ParentPages of mm into page runs (with
// their level) among its own, checking each parent run against its checksum
// once, and that nothing overlaps. Stored runs must be of level 0.
Status expand_parent_pages(const image::ImageDirReader& reader, image::Mm* mm);

// What a dump against a parent image (--prev-images-dir) knows of it.
struct ParentImage {
  std::string path;  // as given: relative to the new image's directory, or absolute
  uint64_t inventory_xxh3 = 0;
  std::unique_ptr<image::ImageDirReader> reader;
  // Opens it (with its own chain) for a dump into images_dir; it must be
  // a pre-dump (pages only).
  static Result<ParentImage> open(const std::string& images_dir, const std::string& path);
  // Its Mm of host pid `pid` (as the pre-dump saw it), if it has one.
  std::optional<image::Mm> mm_of(pid_t pid) const;
  // Writes the parent's name into an inventory and the `parent` link
  // (CRIU's) into the image directory.
  void name_in(image::Inventory* inventory) const;
  Status link_from(const std::string& images_dir) const;
};

}  // namespace cryo::mm
