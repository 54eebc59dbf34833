// The processes forked by `create`: stage A joins and unshares namespaces and
// forks the container's init; init builds the rootfs, waits on exec.fifo for
// `start`, then becomes the container's process.
#pragma once

#include <string>

#include "oci/config.h"

namespace cryo::oci {

struct InitArgs {
  const Spec* spec = nullptr;
  std::string id;
  int sync_fd = -1;       // SOCK_SEQPACKET to the runtime
  int console_fd = -1;    // connected console socket, or -1
  int fifo_fd = -1;       // O_PATH descriptor of exec.fifo
  int state_dir_fd = -1;  // the container's state directory
  bool no_pivot = false;
  bool no_new_keyring = false;
  int preserve_fds = 0;
  std::string cgroup_path;
};

// Child of `create`. Protocol on sync_fd: waits "go" (it is in the cgroup),
// sends "mapme" and waits "go" for a new user namespace, sends "pid:N" for the
// init it forks, then exits. Errors are sent as "error:<text>".
[[noreturn]] void run_stage_a(const InitArgs& args);

}  // namespace cryo::oci
