#include "core/ns/time_ns.h"
#include "core/ns/namespaces.h"

#include <fcntl.h>
#include <sched.h>
#include <time.h>

#include <sstream>
#include <string>

#include "core/sys/io.h"
#include "core/sys/util.h"

namespace cryo::ns {
namespace {

constexpr int64_t kNs = 1000000000LL;

int64_t now_ns(clockid_t clock) {
  struct timespec ts;
  ::clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kNs + ts.tv_nsec;
}

// "monotonic <sec> <nsec>\nboottime <sec> <nsec>\n" (names may also be numbers).
Status parse_offsets(const std::string& text, int64_t* monotonic, int64_t* boottime) {
  std::istringstream in(text);
  std::string name;
  int64_t sec, nsec;
  while (in >> name >> sec >> nsec) {
    int64_t offset = sec * kNs + nsec;
    if (name == "monotonic" || name == "1") *monotonic = offset;
    else if (name == "boottime" || name == "7") *boottime = offset;
  }
  return {};
}

std::string offset_line(const char* clock, int64_t offset) {
  // The kernel wants 0 <= nsec < 1e9, the sign on the seconds.
  int64_t sec = offset / kNs, nsec = offset % kNs;
  if (nsec < 0) {
    nsec += kNs;
    sec -= 1;
  }
  return std::string(clock) + " " + std::to_string(sec) + " " + std::to_string(nsec) + "\n";
}

}  // namespace

Result<bool> dump_time_ns(pid_t pid, image::TimeNs* out) {
  std::string base = "/proc/" + std::to_string(pid);
  if (!own_namespace(pid, "time")) return false;
  CRYO_ASSIGN(std::string text, read_file(base + "/timens_offsets"));
  int64_t monotonic = 0, boottime = 0;
  CRYO_TRY(parse_offsets(text, &monotonic, &boottime));
  out->set_monotonic_ns(now_ns(CLOCK_MONOTONIC) + monotonic);
  out->set_boottime_ns(now_ns(CLOCK_BOOTTIME) + boottime);
  return true;
}

Status make_time_ns(const image::TimeNs& ns) {
  if (ns.monotonic_ns() < 0 || ns.boottime_ns() < 0) return Error(EINVAL, "a time namespace with negative clocks");
  if (::unshare(CLONE_NEWTIME) < 0) return errno_error("unshare(CLONE_NEWTIME)");
  // Offsets are written before any task is in the namespace.
  std::string offsets = offset_line("monotonic", ns.monotonic_ns() - now_ns(CLOCK_MONOTONIC)) +
                        offset_line("boottime", ns.boottime_ns() - now_ns(CLOCK_BOOTTIME));
  CRYO_ASSIGN(UniqueFd file, open_file("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC));
  CRYO_TRY(write_all(file.get(), offsets).wrap("timens_offsets '" + offsets + "'"));
  CRYO_ASSIGN(UniqueFd ns_fd, open_file("/proc/self/ns/time_for_children", O_RDONLY | O_CLOEXEC));
  if (::setns(ns_fd.get(), CLONE_NEWTIME) < 0) return errno_error("entering the new time namespace");
  return {};
}

}  // namespace cryo::ns
