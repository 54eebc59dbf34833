// Pseudo-terminals of the tree's own: a /dev/ptmx master the tree holds, the
// /dev/pts/N slaves of it, their settings, the bytes queued both ways and the
// session whose controlling terminal the pair is. A terminal whose master lies
// outside the tree is the shell's: --shell-job (files_dump) takes it.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/image/proto/files.pb.h"
#include "core/sys/fd.h"
#include "core/sys/result.h"
#include "core/tree/freeze.h"

namespace cryo::files {

bool is_pty_master(const struct stat& st);  // /dev/ptmx (5:2)

// A new pseudo-terminal of the host's devpts, unlocked: its master and slave
// (neither becomes cryo's controlling terminal), and the slave's path.
struct PtyPair {
  UniqueFd master, slave;
  std::string slave_path;
};
Result<PtyPair> open_pty_pair();

// The key (tty[RDEV:DEV]) of the pseudo-terminal slave that is one of fds 0-2
// of pid, as a terminal container's init has its console; "" if none is.
std::string stdio_terminal_key(pid_t pid);

class TtyDump {
 public:
  // The masters the tree holds and the processes that hold their slaves: a
  // slave is the tree's own only with its master in the tree. The masters
  // are of one devpts instance: the host's, or, where tree_root (the
  // /proc/PID/root of a tree with a mount namespace of its own) is given,
  // one of the tree's own.
  Status find_ptys(const tree::FrozenTree& tree, const std::string& tree_root);
  bool has_master(int index) const { return masters_.count(index) > 0; }

  // A character device fd of pid that is a terminal of the tree's own: a
  // master (the pair is saved into files), a slave of one, or /dev/tty
  // naming one. False: not one of them (the shell's terminal, or no terminal).
  Result<bool> describe(pid_t pid, int fd, const struct stat& st, const std::string& link, image::FileDesc* f,
                        image::Files* files);

  // Controlling terminals: a session led in the tree may only have one of
  // the tree's ptys, which all its processes share.
  // An external terminal (--external tty[...]) may be one too: the session is
  // noted on its files (ctty_sid).
  Status check_sessions(const tree::FrozenTree& tree, image::Files* files) const;

 private:
  std::map<int, std::pair<pid_t, int>> masters_;   // pts index -> a holder (pid, fd)
  std::map<int, std::pair<pid_t, int>> slaves_;    // pts index -> a holder in the tree
  std::optional<std::map<int, pid_t>> outside_;    // pts index -> a holder outside the tree
  std::vector<std::pair<pid_t, int>> current_;     // holders of /dev/tty fds: (pid, pts index)
  dev_t devpts_ = 0;          // the devpts instance of the tree's ptys
  std::string devpts_dir_;    // where the tree sees it mounted ("": the host's /dev/pts)
  std::string tree_root_;     // how cryo reaches the tree's paths ("": its own)

  // The N of a /dev/pts/N slave of the tree's devpts instance, or -1.
  int slave_index(const struct stat& st) const;
  std::string slave_path(int index) const;  // as cryo opens it

  Status describe_master(pid_t pid, int fd, const std::string& link, image::FileDesc* f, image::Files* files);
};

}  // namespace cryo::files
