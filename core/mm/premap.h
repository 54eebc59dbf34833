// Copy-on-write sharing between a parent and its children, made again the
// way fork made it. A process whose children share pages with it builds its
// private anonymous mappings (those holding such pages) as "regions" at
// spare addresses in its stub, before it forks its children; each child
// inherits the regions, builds its own from them (its own pages written
// over), and the transplant finally moves each region to its recorded
// address with mremap, which keeps the pages shared. Region addresses are
// reserved in the restorer (PROT_NONE) before any stub exists, away from
// every recorded mapping, so that nothing a stub maps can land there.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "core/image/image.h"
#include "core/image/proto/mm.pb.h"
#include "core/image/proto/tree.pb.h"
#include "core/sys/proc.h"
#include "core/sys/result.h"

namespace cryo::mm {

struct PremapRegion {
  pid_t owner = 0;              // whose mapping it becomes
  uint64_t start = 0, end = 0;  // the mapping, in the owner's recorded layout
  uint64_t at = 0;              // where the stubs build it
};

// The mappings a page run of the child may be inherited through: private,
// anonymous and not growing down (MAP_GROWSDOWN cannot be given to a
// mapping moved into place).
bool inheritable(const image::Vma& v);

// Checks the inherited runs of a process against its own mappings and
// pages and against its parent's mappings (hostile images).
Status validate_inherited(const image::Mm& mm, const image::Mm* parent);

class Premaps {
 public:
  // A region for each inheritable mapping of a process that holds a page
  // one of its children inherits; `taken` are the ranges to stay out of.
  static Result<Premaps> plan(const image::Tree& tree, const std::map<pid_t, image::Mm>& mms,
                              std::vector<std::pair<uint64_t, uint64_t>> taken);
  bool empty() const { return regions_.empty(); }
  const std::vector<PremapRegion>& regions() const { return regions_; }
  // The region of owner's mapping holding addr, or null.
  const PremapRegion* find(pid_t owner, uint64_t addr) const;
  // Whether addr lies in any region's reserved range.
  bool reserved(uint64_t addr) const;

  // In the restorer: reserves every region's range (PROT_NONE) before the
  // stubs are forked; release() gives them back once every stub exists.
  Status reserve();
  void release();

  // In the stub of `self` (parent: `parent`, 0 for the root), before it
  // forks its children: builds its regions from the pages it inherits from
  // its parent's regions and its own pages.
  Status build(pid_t self, pid_t parent, const image::Mm& mm, const image::ImageDirReader& images) const;

  // A lazy migration's pages that cannot come lazily (remote_runs_written_here):
  // fetched from the source before the stubs are forked, kept here for build
  // and for restore_mm, by owner and run address.
  void add_fetched(pid_t owner, uint64_t addr, std::vector<uint8_t> bytes);
  // The bytes of the remote run of owner at addr (npages * 4096 of them).
  Result<const uint8_t*> fetched(pid_t owner, const image::PageRun& run) const;

 private:
  std::vector<PremapRegion> regions_;
  std::map<std::pair<pid_t, uint64_t>, std::vector<uint8_t>> fetched_;
  bool reserved_ = false;
};

// The remote runs (a lazy migration's) of owner's mm that the restore writes
// itself, since they cannot come through userfaultfd: those in a region (its
// children inherit them copy-on-write at their fork) and in a mapping that
// inherits pages from the parent's region.
std::vector<const image::PageRun*> remote_runs_written_here(pid_t owner, const image::Mm& mm, const Premaps& premaps);

// Moves [from, from + len) to `to` with one mremap per mapping it spans
// (mremap moves within one mapping only), along the mappings `maps` shows.
Status move_range(const std::vector<proc::MapEntry>& maps, uint64_t from, uint64_t len, uint64_t to,
                  const std::function<Status(uint64_t from, uint64_t len, uint64_t to)>& mremap_fixed);

}  // namespace cryo::mm
