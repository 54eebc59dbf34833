#include "core/mm/tracking.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "core/mm/uffd_abi.h"
#include "core/ptrace/ptrace.h"
#include "core/ptrace/rescue.h"
#include "core/sys/fdpass.h"
#include "core/sys/io.h"
#include "core/sys/log.h"
#include "core/sys/failpoint.h"
#include "core/task/parked_leader.h"
#include "core/task/task_probe.h"

namespace cryo::mm {
namespace {

constexpr uint64_t kFeatures = abi::kUffdFeatureWpAsync | abi::kUffdFeatureWpUnpopulated;
constexpr unsigned kUffdUserModeOnly = 1;  // UFFD_USER_MODE_ONLY: allowed without CAP_SYS_PTRACE

// make_tracker's mark, from before it makes a userfaultfd inside pid to
// after it closed it there again: found later, the process may hold that fd.
constexpr const char* kMarkerDir = "/run/cryo-trackers";
std::string marker(pid_t pid) { return std::string(kMarkerDir) + "/" + std::to_string(pid); }

Status set_up(int uffd) {
  struct uffdio_api api = {};
  api.api = UFFD_API;
  api.features = kFeatures;
  if (::ioctl(uffd, UFFDIO_API, &api) < 0)
    return errno_error("userfaultfd: asynchronous write-protection (UFFD_FEATURE_WP_ASYNC, Linux 6.7)");
  return {};
}

Result<Written> scan(int pagemap_fd, const Ranges& ranges, bool reprotect) {
  Written out;
  std::vector<abi::PageRegion> regions(512);
  for (const auto& [start, end] : ranges) {
    uint64_t at = start;
    Ranges written;
    bool trusted = true;
    while (at < end) {
      abi::PmScanArg arg = {};
      arg.size = sizeof arg;
      arg.flags = abi::kPmScanCheckWpAsync | (reprotect ? abi::kPmScanWpMatching : 0);
      arg.start = at;
      arg.end = end;
      arg.vec = reinterpret_cast<uint64_t>(regions.data());
      arg.vec_len = regions.size();
      arg.category_mask = abi::kPageIsWritten;
      arg.return_mask = abi::kPageIsWritten;
      long n = ::ioctl(pagemap_fd, abi::kPagemapScan, &arg);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EPERM) {  // a part is not (or no longer) registered
        trusted = false;
        break;
      }
      if (n < 0) return errno_error("PAGEMAP_SCAN");
      for (long i = 0; i < n; i++) written.emplace_back(regions[i].start, regions[i].end);
      if (arg.walk_end <= at) return Error(EIO, "PAGEMAP_SCAN made no progress");
      at = arg.walk_end;
    }
    if (!trusted) continue;
    out.trusted.emplace_back(start, end);
    out.written.insert(out.written.end(), written.begin(), written.end());
  }
  return out;
}

}  // namespace

Ranges intersect(const Ranges& a, const Ranges& b) {
  Ranges out;
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    uint64_t s = std::max(a[i].first, b[j].first), e = std::min(a[i].second, b[j].second);
    if (s < e) out.emplace_back(s, e);
    if (a[i].second < b[j].second) i++; else j++;
  }
  return out;
}

Ranges subtract(const Ranges& a, const Ranges& b) {
  Ranges out;
  size_t j = 0;
  for (auto [s, e] : a) {
    while (j < b.size() && b[j].second <= s) j++;
    for (size_t k = j; k < b.size() && b[k].first < e; k++) {
      if (b[k].first > s) out.emplace_back(s, b[k].first);
      s = std::max(s, b[k].second);
    }
    if (s < e) out.emplace_back(s, e);
  }
  return out;
}

bool trackable(const proc::MapEntry& m) {
  if (m.shared || m.path.starts_with("[v")) return false;  // [vdso], [vvar], [vvar_vclock], [vsyscall]
  return m.path.empty() || m.path.starts_with("/") || m.path == "[heap]" || m.path == "[stack]" ||
         m.path.starts_with("[anon:");
}

Ranges ranges_of(const std::vector<proc::MapEntry>& maps) {
  Ranges out;  // one per mapping: each is scanned on its own
  for (const auto& m : maps)
    if (trackable(m)) out.emplace_back(m.start, m.end);
  return out;
}

Result<bool> probe_write_tracking(std::string* why) {
  UniqueFd uffd(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | kUffdUserModeOnly)));
  if (!uffd.valid()) {
    *why = std::string("userfaultfd: ") + strerror(errno);
    return false;
  }
  if (auto st = set_up(uffd.get()); !st.ok()) {
    *why = st.error().message();
    return false;
  }
  const size_t size = 4 * 4096;
  void* page = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) return errno_error("mmap");
  auto* bytes = static_cast<volatile uint8_t*>(page);
  bytes[0] = 1;
  uint64_t start = reinterpret_cast<uint64_t>(page);
  Ranges range = {{start, start + size}};
  std::vector<proc::MapEntry> maps(1);
  maps[0].start = start;
  maps[0].end = start + size;
  bool ok = register_tracking(uffd.get(), maps) == range && protect(uffd.get(), range).ok();
  if (ok) {
    bytes[2 * 4096] = 1;  // only this page is written after the protection
    auto pagemap = open_file("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    auto written = pagemap.ok() ? scan(pagemap->get(), range, false) : Result<Written>(pagemap.error());
    ok = written.ok() && written->trusted == range && written->written == Ranges{{start + 2 * 4096, start + 3 * 4096}};
    if (!written.ok()) *why = written.error().message();
    else if (!ok) *why = "PAGEMAP_SCAN did not report the one page written";
  } else {
    *why = "userfaultfd: write-protecting a private mapping failed";
  }
  ::munmap(page, size);
  return ok;
}

Result<UniqueFd> make_tracker(pid_t pid, uint64_t syscall_ip, const std::vector<proc::MapEntry>& maps) {
  auto plan = ptrace::plan_rescue(pid, maps);
  const ptrace::RescuePlan* rescue = plan.ok() ? &*plan : nullptr;
  CRYO_ASSIGN(task::TaskProbe probe, task::TaskProbe::attach(pid, syscall_ip, rescue, maps));
  CRYO_ASSIGN(auto tids, proc::list_threads(pid));  // the tree is frozen: no thread comes or goes
  // Left behind if cryo dies before the task's fd is closed again and no
  // guard closes it (a leader with no rescue frame).
  ::mkdir(kMarkerDir, 0700);
  if (UniqueFd m(::open(marker(pid).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600)); !m.valid())
    log::debug(marker(pid) + ": " + strerror(errno) + " (a userfaultfd left by a killed pre-dump would stay)");
  UniqueFd copy;
  int saved = 0;
  // The userfaultfd made, copied and closed again through r; the guard, if
  // any, told the fd it takes before.
  auto make = [&](ptrace::Remote& r, Guard* guard) -> Status {
    int told = -1;
    if (guard) {
      CRYO_ASSIGN(told, task::lowest_free_fd(pid));
      CRYO_TRY(guard->task_fds(pid, r.tid(), {{told, Guard::TaskFd::kUserfaultfd}}));
    }
    CRYO_ASSIGN(long fd, r.raw(SYS_userfaultfd, {O_CLOEXEC | O_NONBLOCK | kUffdUserModeOnly}));
    if (fd < 0) return Error(static_cast<int>(-fd), "userfaultfd in pid " + std::to_string(pid));
    // Another process sharing the fd table took the fd meant: the guard
    // learns the one it took.
    if (guard && fd != told)
      CRYO_TRY(guard->task_fds(pid, r.tid(), {{static_cast<int>(fd), Guard::TaskFd::kUserfaultfd}}));
    auto copied = copy_fd(pid, static_cast<int>(fd));
    if (copied.ok())
      copy = std::move(*copied);
    else
      saved = copied.error().code();
    auto closed = r.raw(SYS_close, {static_cast<uint64_t>(fd)});
    if (!closed.ok() || *closed != 0)
      return Error("pid " + std::to_string(pid) + " fd " + std::to_string(fd) +
                   ": could not close the userfaultfd cryo made there");
    if (guard) CRYO_TRY(guard->task_fds_closed());
    return {};
  };
  // Its threads parked and a guard told, so that a cryo killed in between
  // leaves no fd in the task; unguarded without room for that.
  CRYO_ASSIGN(bool guarded, task::run_parked(tids, probe, rescue, maps, {0}, "tracker",
                                             [&](task::ParkedRoom& parked) { return make(parked.remote, &parked.guard); }));
  if (!guarded) CRYO_TRY(make(probe.remote(), nullptr));
  ::unlink(marker(pid).c_str());
  failpoint("tracker.made");
  if (!copy.valid()) return Error(saved, "pidfd_getfd of the userfaultfd made in pid " + std::to_string(pid));
  CRYO_TRY(set_up(copy.get()));
  return copy;
}

uint64_t stale_tracker_inode(pid_t pid, int fd) {
  std::string base = "/proc/" + std::to_string(pid);
  auto link = read_link(base + "/fd/" + std::to_string(fd));
  if (!link.ok() || *link != "anon_inode:[userfaultfd]") return 0;
  auto info = read_file(base + "/fdinfo/" + std::to_string(fd));
  if (!info.ok()) return 0;
  bool cryo_flags = false, initialised = true;
  uint64_t inode = 0;
  std::istringstream lines(*info);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("flags:"))
      cryo_flags = std::strtoul(line.c_str() + 6, nullptr, 8) == static_cast<unsigned long>(O_CLOEXEC | O_NONBLOCK);
    if (line.starts_with("ino:")) inode = std::strtoull(line.c_str() + 4, nullptr, 10);
    if (line.starts_with("API:")) {  // API:\t<api>:<features>:<ioctls>, in hex
      size_t colon = line.find(':', 4);
      initialised = colon == std::string::npos ||
                    (std::strtoull(line.c_str() + colon + 1, nullptr, 16) & (1ULL << 31)) != 0;
    }
  }
  return cryo_flags && !initialised ? inode : 0;
}

std::set<uint64_t> stale_trackers(const std::vector<pid_t>& pids) {
  std::set<uint64_t> out;
  for (pid_t pid : pids) {
    if (::access(marker(pid).c_str(), F_OK) < 0) continue;
    auto fds = proc::list_fds(pid);
    for (int fd : fds.ok() ? *fds : std::vector<int>())
      if (uint64_t inode = stale_tracker_inode(pid, fd)) out.insert(inode);
  }
  return out;
}

Status close_stale_trackers(pid_t pid, const std::vector<proc::MapEntry>& maps, const std::set<uint64_t>& stale) {
  if (stale.empty()) return {};
  CRYO_ASSIGN(auto fds, proc::list_fds(pid));
  std::vector<int> found;
  for (int fd : fds)
    if (stale.count(stale_tracker_inode(pid, fd))) found.push_back(fd);
  if (found.empty()) return {};
  CRYO_ASSIGN(uint64_t syscall_ip, ptrace::find_syscall_insn(pid, maps));
  auto plan = ptrace::plan_rescue(pid, maps);
  CRYO_ASSIGN(task::TaskProbe probe, task::TaskProbe::attach(pid, syscall_ip, plan.ok() ? &*plan : nullptr, maps));
  for (int fd : found) {
    auto closed = probe.remote().raw(SYS_close, {static_cast<uint64_t>(fd)});
    if (!closed.ok() || *closed != 0)
      return Error("pid " + std::to_string(pid) + " fd " + std::to_string(fd) +
                   ": could not close the userfaultfd a killed cryo pre-dump left there");
    log::warn("pid " + std::to_string(pid) + " fd " + std::to_string(fd) +
              ": closed the userfaultfd a killed cryo pre-dump left there");
  }
  return {};
}

void clear_tracker_marks(const std::vector<pid_t>& pids) {
  for (pid_t pid : pids) ::unlink(marker(pid).c_str());
  // And the marks of processes gone since (a child the killed pre-dump saw).
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(kMarkerDir, ec)) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") == std::string::npos &&
        ::access(("/proc/" + name).c_str(), F_OK) < 0 && errno == ENOENT)
      ::unlink(entry.path().c_str());
  }
}

Ranges register_tracking(int uffd, const std::vector<proc::MapEntry>& maps) {
  Ranges out;
  for (const auto& m : maps) {
    if (!trackable(m)) continue;
    struct uffdio_register reg = {};
    reg.range.start = m.start;
    reg.range.len = m.end - m.start;
    reg.mode = UFFDIO_REGISTER_MODE_WP;
    if (::ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
      log::debug("write tracking leaves out mapping " + std::to_string(m.start) + ": " + strerror(errno));
      continue;
    }
    if (!out.empty() && out.back().second == m.start)
      out.back().second = m.end;
    else
      out.emplace_back(m.start, m.end);
  }
  return out;
}

Status protect(int uffd, const Ranges& ranges) {
  for (const auto& [start, end] : ranges) {
    struct uffdio_writeprotect wp = {};
    wp.range.start = start;
    wp.range.len = end - start;
    wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
    if (::ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) == 0) continue;
    // Unmapped since it was registered (the tree runs): its pages, never
    // protected, show as written to every scan.
    if (errno == ENOENT) {
      log::debug("write tracking leaves out " + std::to_string(start) + ": no longer registered");
      continue;
    }
    return errno_error("UFFDIO_WRITEPROTECT");
  }
  return {};
}

Result<Written> scan_written(pid_t pid, const Ranges& ranges, bool reprotect) {
  CRYO_ASSIGN(UniqueFd pagemap, open_file("/proc/" + std::to_string(pid) + "/pagemap", O_RDONLY | O_CLOEXEC));
  return scan(pagemap.get(), ranges, reprotect);
}

}  // namespace cryo::mm
