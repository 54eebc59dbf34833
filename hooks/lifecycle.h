// Runs OCI lifecycle hooks: each is a program given the container state on
// stdin, killed when its timeout passes.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/sys/result.h"

namespace cryo::hooks {

struct HookCommand {
  std::string path;
  std::vector<std::string> args;  // args[0] is argv[0]; empty: path
  std::vector<std::string> env;
  std::optional<int> timeout_seconds;
};

struct RunOptions {
  // Joins this mount namespace (an open /proc/PID/ns/mnt fd) before exec; -1: stay.
  int mount_ns_fd = -1;
};

// Runs one hook to completion; fails when it exits non-zero, is killed or times out.
Status run_hook(const HookCommand& hook, const std::string& state_json, const RunOptions& options = {});
// Runs the hooks in order, stopping at the first failure; `stage` names them in errors.
Status run_hooks(const std::vector<HookCommand>& hooks, const std::string& stage, const std::string& state_json,
                 const RunOptions& options = {});

}  // namespace cryo::hooks
