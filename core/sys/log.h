// The log: errors always reach stderr; everything at or below the verbosity
// reaches the log file when one is set.
#pragma once

#include <string>

#include "core/sys/result.h"

namespace cryo::log {

enum Level { kError = 1, kWarn = 2, kInfo = 3, kDebug = 4 };

void set_verbosity(int level);
// Whether anything reaches stderr (the CRIU RPC door's stderr may be a
// restored container's: it logs into its file only).
void set_stderr(bool on);
// The last error written (what a caller that reports errors itself, as the
// CRIU RPC door does, passes on).
std::string last_error();
int verbosity();
Status open_file(const std::string& path);
void write(Level level, const std::string& message);

inline void error(const std::string& m) { write(kError, m); }
inline void warn(const std::string& m) { write(kWarn, m); }
inline void info(const std::string& m) { write(kInfo, m); }
inline void debug(const std::string& m) { write(kDebug, m); }

}  // namespace cryo::log
