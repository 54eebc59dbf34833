// Incremental dumps: what `cryo pre-dump` and a dump with --prev-images-dir
// share (core/predump.cpp).
#pragma once

#include <sys/types.h>

#include <map>
#include <set>
#include <vector>

#include "core/checkpoint.h"
#include "core/image/image.h"
#include "core/mm/mm_dump.h"
#include "core/mm/parent_images.h"
#include "core/mm/tracking.h"
#include "core/sys/fd.h"
#include "core/sys/proc.h"
#include "core/tree/freeze.h"

namespace cryo {

struct TreeWrites {
  std::map<pid_t, mm::IncrementalMm> mms;  // processes the parent image holds
  std::map<pid_t, mm::Ranges> trusted;     // still tracked since the parent
  std::map<pid_t, UniqueFd> uffds;         // the tracking, taken from the parent's keeper
};

// Takes the write tracking the parent's pre-dump left (its keeper ends) and
// reads which pages of each frozen process were written since; with
// reprotect they are protected again for the next image. A process the
// parent did not track, or whose tracking is gone, is saved whole.
// With `taken`, the userfaultfds were taken from the keeper already and the
// tree runs (precopy): a process whose scan fails (gone meanwhile) is left
// untracked, saved whole once the tree is frozen.
Result<TreeWrites> writes_since(const mm::ParentImage& parent, const tree::FrozenTree& tree,
                                const std::map<pid_t, std::vector<proc::MapEntry>>& maps, bool reprotect,
                                std::map<pid_t, UniqueFd>* taken = nullptr);

// Write tracking started on a frozen tree: what a parent image's tracking
// says was written since it (TreeWrites; its userfaultfds and every new
// one in writes.uffds) and the ranges of each process registered now.
struct Tracking {
  TreeWrites writes;
  std::map<pid_t, mm::Ranges> registered;
};

// While the tree is frozen: takes over the parent's tracking (protecting
// again what was written since it) or makes a userfaultfd in each process,
// registers its private mappings and write-protects them. A process whose
// tracking cannot start is left out with a warning (its memory is saved
// whole by the next dump).
Result<Tracking> track_writes(const mm::ParentImage* parent, const tree::FrozenTree& tree,
                              const std::map<pid_t, std::vector<proc::MapEntry>>& maps);

// Memory copied while the tree runs. A dump that lets the tree run on
// (--leave-running), or one against a parent image, starts write tracking
// with the tree stopped for a moment, thaws it and copies the private
// pages of every tracked process into the image's pages.img; once the tree
// is frozen for the dump, only what was written since is read again
// (since_precopy) and the rest is named from the earlier copy (level 0).
//
// The tree changes while it runs: a process that exits (or whose copy fails
// otherwise) is dropped from the copy and its tracking ends; one forked
// meanwhile is not in it: either is saved whole once the tree is frozen.
struct Precopy {
  bool started = false;                  // tracking was started (a parent's taken over)
  std::map<pid_t, image::Mm> mms;        // pages (and parent_pages) as copied
  std::map<pid_t, mm::Ranges> zero;      // pages found all zero then
  std::map<pid_t, mm::Ranges> registered;
  std::map<pid_t, UniqueFd> uffds;       // the tracking since; closing them ends it
  std::map<pid_t, UniqueFd> pidfds;      // each process as it was at the stop (a pid reused since is another)
  std::vector<image::PageRun> dropped;   // runs no longer named: of processes dropped, or copied again
  uint64_t freeze_us = 0;                // how long the tree was stopped to start it
  uint64_t copy_us = 0;
  unsigned page_writers = 0;             // threads that copied at once (mm::PageCopies)
  mm::DumpStats stats;
};

// Starts tracking and copies (see Precopy). An empty Precopy (nothing
// tracked) when this kernel cannot track writes or the tree has a
// userfaultfd of its own: the dump then copies all its memory frozen.
Result<Precopy> precopy(const DumpOptions& options, const mm::ParentImage* parent, image::PageWriter& pages);

// With the tree frozen again: for each process the copy holds, which of its
// pages are unchanged since and where the copy has them. A process not
// tracked (new since, or its tracking failed) is saved whole.
Result<std::map<pid_t, mm::IncrementalMm>> since_precopy(const Precopy& pre,
                                                         const std::map<pid_t, std::vector<proc::MapEntry>>& maps);

// The runs of the copy that no process of the image names (`named`: where
// the level-0 runs the image's processes name are): pages written again
// before the freeze, processes gone or dropped. The inventory lists them so
// that the loader checks them too.
std::vector<image::PageRun> superseded_runs(const Precopy& pre, const std::set<image::RunPlace>& named);

}  // namespace cryo
