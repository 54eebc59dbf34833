// What a long dump or restore is doing, for whoever waits on it: after a
// second on a terminal (stderr a tty), one line rewritten in place with the
// phase, the bytes of memory moved so far and the rate; and how long each
// phase took, for the stats files.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cryo::progress {

struct PhaseTime {
  std::string name;
  uint64_t us = 0;
};

// One command's report, from construction to destruction (one at a time).
// The line shows when stderr is a terminal and the command has run for
// CRYO_PROGRESS_AFTER_MS (default 1000) milliseconds; it is erased at the end.
class Reporter {
 public:
  explicit Reporter(const std::string& command);
  ~Reporter();
  Reporter(const Reporter&) = delete;
  Reporter& operator=(const Reporter&) = delete;
};

// The phase the command is in now (ends the one before). Outside a Reporter
// these do nothing, so core code may call them from anywhere.
void phase(const std::string& name);
// Bytes of memory moved (written to the image, or into the restored tasks).
void add_bytes(uint64_t bytes);
// The phases so far (or of the last report), the current one timed up to now.
std::vector<PhaseTime> phases();
// {"name_us":N,...}: phases as a JSON object ("writing memory" -> writing_memory_us).
std::string to_json(const std::vector<PhaseTime>& phases);
// How long the phase of that name took (0: none).
uint64_t us_of(const std::vector<PhaseTime>& phases, const std::string& name);

}  // namespace cryo::progress
