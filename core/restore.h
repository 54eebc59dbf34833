// `cryo restore`: the stages of a restore, in order.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/cgroup/membership.h"
#include "core/ns/net/options.h"
#include "core/files/external.h"
#include "core/hooks/actions.h"
#include "core/sys/progress.h"
#include "core/sys/result.h"

namespace cryo {

struct RestoreOptions {
  std::string images_dir;
  bool shell_job = false;
  bool detach = false;
  bool tcp_established = false;
  bool tcp_close = false;  // connections come back closed
  bool new_pidns = false;  // under a fresh pid namespace with cryo's init as pid 1
  std::map<std::string, std::string> external_mounts;  // --external mnt[KEY]:PATH
  bool external_mounts_optional = false;  // CRIU RPC's ext_mnt: keys the image lacks are passed over
  std::string root;        // --root: the root of the tree's own mount namespace ("": where it was)
  std::string pidfile;
  std::vector<files::InheritFd> inherit_fds;  // --inherit-fd: the caller's fds standing in for files of the image
  // CRIU's orphan_pts_master: a terminal of the image whose master was outside
  // the tree and that no --inherit-fd hands over gets a new pty; the tree gets
  // its slave, and this is given the master (runc passes it to the console socket).
  std::function<Status(int master)> orphan_pts_master;
  cgroup::Manage manage_cgroups = cgroup::Manage::kSoft;
  std::vector<cgroup::CgroupRoot> cgroup_roots;  // --cgroup-root: the root process's cgroups go there
  hooks::Actions actions;  // --action-script
  ns::NetNsRestoreOptions net_ns;  // --empty-ns net, --join-ns net:PATH, --external veth[...]
  // --lazy-pages: private anonymous memory comes after the tree runs, from
  // the `cryo lazy-pages` daemon listening on this socket.
  std::string lazy_pages_socket;
};

struct RestoreResult {
  pid_t root = 0;  // as cryo sees it
  int exit_code = 0;  // the restored root's, when not detached
  uint64_t total_us = 0;
  std::vector<progress::PhaseTime> phases;  // reading the image, creating processes, writing memory
  uint64_t pages_bytes = 0;  // of memory written in (not counting lazy pages)
  unsigned page_writers = 0;  // threads that wrote them
};

// Recreates the tree of an image. On failure every task it made is killed
// and the image is left as it was.
Result<RestoreResult> restore(const RestoreOptions& options);

// Removes the network lock an image's dump left (for a checkpoint that will
// not be restored, or after a failed restore); returns its name, empty if the
// image has none. A lock already gone is fine.
Result<std::string> network_unlock(const std::string& images_dir);

}  // namespace cryo
