// The tree's time namespace: CLOCK_MONOTONIC and CLOCK_BOOTTIME as the tree
// sees them go on after a restore from where they were at dump time, on this
// host or another (the time in between is not counted), as in CRIU.
#pragma once

#include <sys/types.h>

#include "core/image/proto/tree.pb.h"
#include "core/sys/result.h"

namespace cryo::ns {

// The clocks of pid's time namespace now, if it is not cryo's (false if it is).
Result<bool> dump_time_ns(pid_t pid, image::TimeNs* out);

// In the tree's root task, before it forks: a new time namespace whose
// clocks read what the image says, entered by the task itself.
Status make_time_ns(const image::TimeNs& ns);

}  // namespace cryo::ns
