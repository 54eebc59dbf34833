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

// One process's view of an earlier copy of its memory while it is dumped:
// its parent image's, or the copy this very dump made while the tree ran
// (level 0, pages earlier in the same page files).
class IncrementalMm {
 public:
  // earlier: the process's memory in that copy, its `pages` at
  // `level` (1: the parent image, 0: this image) and its parent_pages
  // `level` further up the chain; unchanged: the ranges whose pages nobody
  // wrote since (tracked and still trusted); zero: pages the copy found all
  // zero (and left out).
  IncrementalMm(const image::Mm& earlier, Ranges unchanged, uint32_t level = 1, Ranges zero = {});
  IncrementalMm() = default;

  enum class Taken { kNo, kStored, kZero };
  // Where the lookups of one caller ended: pages are asked for in address
  // order, so each lookup usually starts where the last one ended. One per
  // thread asking (ranges of one process are copied on several at once).
  struct Cursor {
    size_t unchanged = 0, zero = 0, source = 0;
  };
  // Whether the page at addr is unchanged and an earlier copy holds it
  // (kStored: appended to out's parent_pages) or found it all zero (kZero).
  Taken take(uint64_t addr, image::Mm* out, Cursor& at) const;
  // take() for every page of [start, end) at once: appends to out's
  // parent_pages what an earlier copy holds, to *zero what it found all
  // zero, to *rest the pages it has nothing of (all three sorted).
  // Returns the number of pages taken from the copy.
  uint64_t take_range(uint64_t start, uint64_t end, image::Mm* out, Ranges* zero, Ranges* rest) const;

  // Set when cryo's own userfaultfd registers the mappings (pre-dump, or
  // a dump copying while the tree runs): their VmFlags show it (um/uw) and
  // are no reason to refuse them.
  bool registered_by_cryo = false;
  // The copy made while the tree runs: private pages only, the mappings of
  // shared objects and files are saved once it is frozen.
  bool private_only = false;
  // ... and a page it cannot read (a mapping gone meanwhile) is left to
  // the copy made frozen.
  bool running = false;

 private:
  struct Source {
    uint64_t start, end;  // the pages this source holds
    uint32_t level;       // in the chain of the image being written (1: its parent)
    image::PageRun run;   // as stored at that level
  };
  Ranges unchanged_;
  Ranges zero_;
  std::vector<Source> sources_;  // sorted by start
  // Appends [addr, addr + npages pages) of src to out's parent_pages.
  static void add_slice(const Source& src, uint64_t addr, uint64_t npages, image::Mm* out);
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
