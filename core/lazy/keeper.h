// The keeper of a lazy-pages daemon (daemon.h): a process of its own holding
// a copy of every userfaultfd whose memory is not all in yet. The daemon
// tells it of each one (kAdd, with the fd), of each finished (kDrop), of pids
// it learns (kPid) and of its end (kEnd). Should the daemon vanish without
// kEnd while some memory is missing, the keeper kills every restored process
// and their descendants.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::lazy {

class Keeper {
 public:
  // Forks the keeper.
  static Result<Keeper> start();
  Keeper() = default;
  Keeper(Keeper&&) = default;
  Keeper& operator=(Keeper&&) = default;

  void add(int id, pid_t pid, int uffd);
  void drop(int id);
  void learned_pid(int id, pid_t pid);
  // Everything is in: the keeper lets go and exits.
  void end();

 private:
  void send(uint32_t kind, int id, pid_t pid, int fd = -1);
  UniqueFd sock_;
  pid_t pid_ = 0;
};

}  // namespace cryo::lazy
