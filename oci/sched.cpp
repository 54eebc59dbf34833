// process.scheduler (sched_setattr) and process.ioPriority (ioprio_set).
#include <linux/sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sched.h>

#include <cstdlib>
#include <cstdint>
#include <map>

#include "oci/process.h"

namespace cryo::oci {
namespace {

// struct sched_attr, first version (48 bytes); <linux/sched/types.h> clashes with <sched.h>.
struct SchedAttr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;
  uint64_t sched_deadline;
  uint64_t sched_period;
};
static_assert(sizeof(SchedAttr) == 48);

}  // namespace

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
  SchedAttr attr = {};
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

Status set_cpu_affinity(const std::string& list) {
  cpu_set_t set;
  CPU_ZERO(&set);
  size_t pos = 0;
  while (pos < list.size()) {
    size_t end = list.find(',', pos);
    if (end == std::string::npos) end = list.size();
    std::string item = list.substr(pos, end - pos);
    char* rest = nullptr;
    long first = std::strtol(item.c_str(), &rest, 10);
    long last = first;
    if (*rest == '-') last = std::strtol(rest + 1, &rest, 10);
    if (item.empty() || *rest != 0 || first < 0 || last < first || last >= CPU_SETSIZE)
      return Error(EINVAL, "process.execCPUAffinity: bad cpu list '" + list + "'");
    for (long cpu = first; cpu <= last; cpu++) CPU_SET(static_cast<int>(cpu), &set);
    pos = end + 1;
  }
  if (::sched_setaffinity(0, sizeof set, &set) < 0) return errno_error("process.execCPUAffinity " + list);
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
