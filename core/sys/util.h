// Small helpers every stage uses.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>

namespace cryo {

// Microseconds on the monotonic clock.
inline uint64_t now_us() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

// "pid 1234", the way every error names a process.
inline std::string pid_str(pid_t pid) { return "pid " + std::to_string(pid); }

}  // namespace cryo
