// The keeper of write tracking between `cryo pre-dump` and the dump after
// it. A userfaultfd's registrations end with its last reference, and cryo
// exits between the two commands; the tree must not hold the files (they
// would be new fds in its tables). So pre-dump leaves a small process of its
// own, forked from cryo and detached from its session, that holds nothing
// but the userfaultfds and a pidfd of each tracked process. It exits when
// the next dump takes the files (and kills it), when every tracked process
// has exited, or, before the image is committed, when the cryo that made it
// dies. Its pid and start time are in the pre-dump's inventory, and from
// the commit on in /run/cryo-keepers/PID for each tracked process: a dump
// or pre-dump without that image as parent finds it there (end_keepers_of).
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "core/image/proto/inventory.pb.h"
#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::mm {

class Keeper {
 public:
  // Forks the keeper holding copies of `uffds` (pid -> userfaultfd). Until
  // commit() it dies with cryo.
  static Result<Keeper> start(const std::map<pid_t, UniqueFd>& uffds);
  Keeper(Keeper&&) = default;
  ~Keeper();
  // Where the files are, for the image.
  void describe(image::WriteTracking* out) const;
  // The image is committed: the keeper outlives cryo from now on.
  void commit();

 private:
  Keeper() = default;
  pid_t pid_ = 0;
  uint64_t start_time_ = 0;
  UniqueFd pidfd_;
  UniqueFd go_;  // write end of the pipe the keeper waits on
  std::map<pid_t, int> fds_;  // tracked pid -> fd number in the keeper
  std::vector<std::string> entries_;  // its /run/cryo-keepers files, made by commit()
};

// Takes the userfaultfds from the keeper an image names, then ends it
// (killed, and waited for). An empty map when the keeper is gone (its
// tree exited, or another dump took its files): there is no tracking left.
Result<std::map<pid_t, UniqueFd>> take_from_keeper(const image::WriteTracking& tracking);

// A dump or pre-dump without a parent image starts over: the keepers that
// track writes of any of pids (an earlier pre-dump's, whose registrations
// would refuse the memory as userfaultfd-registered) end now, and their
// tracking with them. A later dump that names that pre-dump as parent then
// saves the memory whole.
void end_keepers_of(const std::vector<pid_t>& pids);

}  // namespace cryo::mm
