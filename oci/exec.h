// Running another process in a live container (`exec`), and the foreground
// wait that `run` and `exec` share.
#pragma once

#include <sys/types.h>

#include <string>

#include "core/sys/result.h"
#include "oci/config.h"

namespace cryo::oci {

struct ExecOptions {
  std::string root, id, pid_file, console_socket;
  Process process;
  bool detach = false;
  int preserve_fds = 0;
};

// Starts the process in the container's namespaces and cgroup. Returns its
// exit status when in the foreground, 0 when detached.
Result<int> exec_in_container(const ExecOptions& options);
// Forwards the usual signals to pid and waits for it; returns its exit code
// (128+N when killed by signal N).
int forward_and_wait(pid_t pid);

}  // namespace cryo::oci
