// Incremental dumps: what `cryo pre-dump` and a dump with --prev-images-dir
// share (core/predump.cpp).
#pragma once

#include <sys/types.h>

#include <map>
#include <vector>

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
Result<TreeWrites> writes_since(const mm::ParentImage& parent, const tree::FrozenTree& tree,
                                const std::map<pid_t, std::vector<proc::MapEntry>>& maps, bool reprotect);

}  // namespace cryo
