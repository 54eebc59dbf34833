// process.scheduler (sched_setattr) and process.ioPriority (ioprio_set).
#include <linux/sched.h>
#include <linux/sched/types.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <map>

#include "oci/process.h"

namespace cryo::oci {

Status apply_scheduler(const Scheduler& s) {
  static const std::map<std::string, uint32_t> kPolicies = {
      {"SCHED_OTHER", SCHED_NORMAL}, {"SCHED_FIFO", SCHED_FIFO},   {"SCHED_RR", SCHED_RR},
      {"SCHED_BATCH", SCHED_BATCH},  {"SCHED_IDLE", SCHED_IDLE},   {"SCHED_DEADLINE", SCHED_DEADLINE}};
  static const std::map<std::string, uint64_t> kFlags = {
      {"SCHED_FLAG_RESET_ON_FORK", SCHED_FLAG_RESET_ON_FORK}, {"SCHED_FLAG_RECLAIM", SCHED_FLAG_RECLAIM},
      {"SCHED_FLAG_DL_OVERRUN", SCHED_FLAG_DL_OVERRUN},       {"SCHED_FLAG_KEEP_POLICY", SCHED_FLAG_KEEP_POLICY},
      {"SCHED_FLAG_KEEP_PARAMS", SCHED_FLAG_KEEP_PARAMS},     {"SCHED_FLAG_UTIL_CLAMP_MIN", SCHED_FLAG_UTIL_CLAMP_MIN},
      {"SCHED_FLAG_UTIL_CLAMP_MAX", SCHED_FLAG_UTIL_CLAMP_MAX}};
  auto policy = kPolicies.find(s.policy);
  if (policy == kPolicies.end()) return Error(EINVAL, "process.scheduler: unknown policy '" + s.policy + "'");
  struct sched_attr attr = {};
  attr.size = sizeof attr;
  attr.sched_policy = policy->second;
  attr.sched_nice = s.nice;
  attr.sched_priority = static_cast<uint32_t>(s.priority);
  attr.sched_runtime = s.runtime;
  attr.sched_deadline = s.deadline;
  attr.sched_period = s.period;
  for (auto& f : s.flags) {
    auto flag = kFlags.find(f);
    if (flag == kFlags.end()) return Error(EINVAL, "process.scheduler: unknown flag '" + f + "'");
    attr.sched_flags |= flag->second;
  }
  if (::syscall(SYS_sched_setattr, 0, &attr, 0) < 0) {
    std::string hint = errno == EPERM && (s.policy == "SCHED_FIFO" || s.policy == "SCHED_RR")
                           ? " (a real-time policy needs cpu.rt_runtime_us in the container's cgroup)"
                           : "";
    return errno_error("process.scheduler: sched_setattr " + s.policy + hint);
  }
  return {};
}

Status apply_io_priority(const IoPriority& io) {
  static const std::map<std::string, int> kClasses = {
      {"IOPRIO_CLASS_RT", 1}, {"IOPRIO_CLASS_BE", 2}, {"IOPRIO_CLASS_IDLE", 3}};
  auto cls = kClasses.find(io.io_class);
  if (cls == kClasses.end()) return Error(EINVAL, "process.ioPriority: unknown class '" + io.io_class + "'");
  if (io.priority < 0 || io.priority > 7) return Error(EINVAL, "process.ioPriority: priority must be 0..7");
  constexpr int kWhoProcess = 1, kClassShift = 13;
  if (::syscall(SYS_ioprio_set, kWhoProcess, 0, (cls->second << kClassShift) | io.priority) < 0)
    return errno_error("process.ioPriority: ioprio_set " + io.io_class);
  return {};
}

}  // namespace cryo::oci
