// Where the restorer keeps its own fds while it builds a tree.
//
// Every file of an image is opened once, by the restorer, and each stub
// (forked from it) moves the ones it needs to their recorded numbers with
// dup2. For that, the restorer's copies, and the pipes it talks to the
// stubs over, sit at numbers no process of the image uses (the zone): no
// dup2 of a stub then overwrites a copy it still needs, and once the tree
// is made every stub closes the zone. The zone is above the highest
// recorded fd where the fd limit leaves room, else the widest run of
// numbers between recorded fds: a process under valgrind keeps its own
// fds just below its limit.
#pragma once

#include <climits>
#include <vector>

#include "core/image/proto/task.pb.h"
#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::files {

struct FdZone {
  int begin = 0;
  int end = INT_MAX;  // past the last number (INT_MAX: none above)

  // The lowest free number of the zone, as a copy of fd (close-on-exec);
  // fd itself stays open.
  Result<UniqueFd> copy(int fd) const;
};

// The zone for the processes `cores` (null entries skipped), with room for
// at least `needed` fds where the numbers allow it: limit is the highest
// fd number the restorer may open plus one (its RLIMIT_NOFILE). An image
// whose fds this limit does not allow is refused.
Result<FdZone> fd_zone(const std::vector<const image::Process*>& cores, int limit, int needed);

}  // namespace cryo::files
