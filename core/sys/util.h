// Small helpers every stage uses.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>

#include <sched.h>
#include <time.h>

namespace cryo {

// Microseconds on the monotonic clock.
inline uint64_t now_us() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

// Microseconds of CPU time cryo (all its threads) has used: on a busy
// machine a phase's CPU time says what its wall time would be on an idle one.
inline uint64_t cpu_us() {
  struct timespec ts;
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

// The CPUs cryo may run on (its affinity: `taskset -c 0 cryo` gets one).
inline unsigned usable_cpus() {
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof set, &set) < 0) return 1;
  return static_cast<unsigned>(std::max(1, CPU_COUNT(&set)));
}

// "pid 1234", the way every error names a process.
inline std::string pid_str(pid_t pid) { return "pid " + std::to_string(pid); }

}  // namespace cryo
