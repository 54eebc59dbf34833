// The last steps of every container process (init and exec): limits, user,
// capabilities, seccomp, working directory and the execve itself.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/seccomp/seccomp.h"
#include "core/sys/result.h"
#include "oci/config.h"

namespace cryo::oci {

struct ExecPlan {
  Process process;
  std::optional<seccomp::Profile> seccomp;
  bool in_user_ns = false;
  int preserve_fds = 0;  // fds 3 .. 3+N-1 stay open
  std::string personality;  // "", LINUX, LINUX32
};

// RLIMIT_NOFILE -> RLIMIT_NOFILE's number; -1 when unknown.
int rlimit_number(const std::string& name);
Status apply_rlimits(const std::vector<Rlimit>& rlimits);
Status set_oom_score_adj(int value);
Status apply_scheduler(const Scheduler& scheduler);
Status apply_io_priority(const IoPriority& io);
// Pins the calling process to a cpu list ("0-3,7").
Status set_cpu_affinity(const std::string& list);
// Finds args[0] along the PATH of env (not ours).
Result<std::string> find_executable(const std::string& name, const std::vector<std::string>& env);
// Applies the plan and execs; returns only on failure.
Status exec_process(const ExecPlan& plan);
// The home directory of uid in /etc/passwd text, "/" when it has none: a process
// whose env has no HOME gets this one, as with runc.
std::string home_of(const std::string& passwd, uid_t uid);

}  // namespace cryo::oci
