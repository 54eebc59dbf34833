// The runtime's log as runc writes it: --log FILE with --log-format text or
// json (one {"level","msg","time"} object a line; containerd reads the last
// error line of it to explain a failure).
#pragma once

#include <string>

#include "core/sys/result.h"

namespace cryo::oci {

Status setup_runtime_log(const std::string& path, const std::string& format, bool debug);
// Logs the error (stderr and the log file) and returns the exit code 1.
int report_error(const std::string& message);
void log_debug(const std::string& message);
// What the runtime ignores or works around (stderr, and the log file at any level).
void log_warning(const std::string& message);

}  // namespace cryo::oci
