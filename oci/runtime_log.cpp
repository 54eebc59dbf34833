#include "oci/runtime_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/sys/log.h"
#include "oci/state.h"

namespace cryo::oci {
namespace {

int g_json_fd = -1;
bool g_debug = false;

void write_json(const char* level, const std::string& message) {
  if (g_json_fd < 0) return;
  nlohmann::json j = {{"level", level}, {"msg", message}, {"time", now_rfc3339()}};
  std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  (void)!::write(g_json_fd, line.data(), line.size());
}

}  // namespace

Status setup_runtime_log(const std::string& path, const std::string& format, bool debug) {
  g_debug = debug;
  if (debug) log::set_verbosity(log::kDebug);
  if (format != "text" && format != "json") return Error(EINVAL, "--log-format must be text or json, not '" + format + "'");
  if (path.empty()) return {};
  if (format == "text") return log::open_file(path);
  g_json_fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (g_json_fd < 0) return errno_error("open log file " + path);
  return {};
}

int report_error(const std::string& message) {
  write_json("error", message);
  log::error(message);
  return 1;
}

void log_warning(const std::string& message) {
  write_json("warning", message);
  log::warn(message);
}

void log_debug(const std::string& message) {
  if (g_debug) write_json("debug", message);
  log::debug(message);
}

}  // namespace cryo::oci
