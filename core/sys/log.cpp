#include "core/sys/log.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>

namespace cryo::log {
namespace {

int g_verbosity = kWarn;
int g_file = -1;
bool g_stderr = true;
std::string g_last_error;

const char* level_name(Level level) {
  switch (level) {
    case kError: return "error";
    case kWarn: return "warn";
    case kInfo: return "info";
    case kDebug: return "debug";
  }
  return "?";
}

void write_all(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

}  // namespace

void set_verbosity(int level) { g_verbosity = level; }
void set_stderr(bool on) { g_stderr = on; }
std::string last_error() { return g_last_error; }
int verbosity() { return g_verbosity; }

Status open_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return errno_error("open log file " + path);
  if (g_file >= 0) ::close(g_file);
  g_file = fd;
  return {};
}

void write(Level level, const std::string& message) {
  if (level == kError) g_last_error = message;
  if (level > g_verbosity && (g_file < 0 || level > kDebug)) return;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  char stamp[48];
  snprintf(stamp, sizeof stamp, "(%5ld.%06ld) ", static_cast<long>(ts.tv_sec), ts.tv_nsec / 1000);
  std::string line = std::string(stamp) + level_name(level) + ": " + message + "\n";
  if (g_file >= 0) write_all(g_file, line);
  if (!g_stderr) return;
  if (level == kError) {
    write_all(2, "cryo: " + message + "\n");
  } else if (level <= g_verbosity && g_file < 0) {
    write_all(2, line);
  }
}

}  // namespace cryo::log
