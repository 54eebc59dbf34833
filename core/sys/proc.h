// Parsers of /proc files. Each is a pure function of the file's text so
// that unit tests can feed them fixtures; readers that touch /proc are below.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/sys/result.h"

namespace cryo::proc {

struct MapEntry {
  uint64_t start = 0, end = 0;
  bool read = false, write = false, exec = false, shared = false;
  uint64_t offset = 0;
  uint32_t dev_major = 0, dev_minor = 0;
  uint64_t inode = 0;
  std::string path;  // "" for anonymous, "[heap]", "/usr/lib/x.so", "/x (deleted)"
};
// The lines of a /proc text, without their newlines (views into text).
std::vector<std::string_view> split_lines(std::string_view text);

Result<std::vector<MapEntry>> parse_maps(std::string_view text);

// What /proc/PID/smaps adds to maps for one mapping.
struct SmapsEntry {
  std::vector<std::string> flags;  // VmFlags
  uint64_t resident_kb = 0;        // Rss plus Swap: 0 means no page to look at
  uint64_t shared_kb = 0;          // Shared_Clean plus Shared_Dirty: pages another mapping maps too
};
// Every mapping of /proc/PID/smaps, keyed by start address, in one pass.
Result<std::map<uint64_t, SmapsEntry>> parse_smaps(std::string_view text);

// The VmFlags, or the resident kilobytes, alone (views of parse_smaps).
Result<std::map<uint64_t, std::vector<std::string>>> parse_smaps_flags(std::string_view text);
Result<std::map<uint64_t, uint64_t>> parse_smaps_resident(std::string_view text);

struct Stat {
  pid_t pid = 0;
  std::string comm;
  char state = '?';
  pid_t ppid = 0, pgid = 0, sid = 0;
  uint32_t tty_nr = 0;  // the controlling terminal's device number (0: none)
  pid_t tpgid = -1;     // its foreground process group
  uint64_t start_code = 0, end_code = 0, start_stack = 0;
  uint64_t start_data = 0, end_data = 0, start_brk = 0;
  uint64_t arg_start = 0, arg_end = 0, env_start = 0, env_end = 0;
  int exit_code = 0;
  int num_threads = 0;
};
Result<Stat> parse_stat(std::string_view text);

struct Status {
  std::array<uint32_t, 4> uids{}, gids{};  // real, effective, saved, filesystem
  std::vector<uint32_t> groups;
  uint64_t cap_inh = 0, cap_prm = 0, cap_eff = 0, cap_bnd = 0, cap_amb = 0;
  int no_new_privs = 0;
  int seccomp = 0;
  uint64_t sig_ignored = 0, sig_caught = 0;  // SigIgn, SigCgt: bit n-1 for signal n
  uint32_t umask = 022;
  std::vector<pid_t> nspid;
};
Result<Status> parse_status(std::string_view text);

struct Limit {
  uint64_t soft = 0, hard = 0;  // RLIM_INFINITY for "unlimited"
};
// The 16 limits of /proc/PID/limits, in RLIMIT_* order.
Result<std::vector<Limit>> parse_limits(std::string_view text);

struct FdInfo {
  uint64_t pos = 0;
  uint32_t flags = 0;
  int mnt_id = -1;
  uint64_t ino = 0;
  std::map<std::string, std::string> fields;  // every "key: value" line
};
Result<FdInfo> parse_fdinfo(std::string_view text);

// The anonymous-inode files' own fdinfo lines.
struct EventFdInfo {
  uint64_t count = 0;
  bool semaphore = false;
};
// Fails if this kernel does not say whether the eventfd is a semaphore (< 6.6).
Result<EventFdInfo> parse_eventfd(const FdInfo& info);
Result<uint64_t> parse_signalfd_mask(const FdInfo& info);
struct TimerFdInfo {
  int clockid = 0;
  uint64_t ticks = 0;
  uint32_t settime_flags = 0;
  uint64_t value_ns = 0, interval_ns = 0;
};
Result<TimerFdInfo> parse_timerfd(const FdInfo& info);
// "tfd: N events: X data: Y ..." lines of an epoll fd, in the order shown.
struct EpollTarget {
  int fd = -1;
  uint32_t events = 0;
  uint64_t data = 0;
};
Result<std::vector<EpollTarget>> parse_epoll_targets(std::string_view fdinfo_text);
// "inotify wd:.. ino:.. sdev:.. mask:.. ignored_mask:.. fhandle-bytes:.. fhandle-type:.. f_handle:.." lines.
struct InotifyWatch {
  int wd = 0;
  uint64_t ino = 0;
  uint32_t sdev = 0;  // the kernel's dev_t: major << 20 | minor
  uint32_t mask = 0, ignored_mask = 0;
  int handle_type = 0;
  std::string handle;  // the file handle's bytes
};
Result<std::vector<InotifyWatch>> parse_inotify_watches(std::string_view fdinfo_text);

// /proc/PID/timers: the process's timer_create timers.
struct PosixTimerInfo {
  int id = 0;
  int signo = 0;
  uint64_t value = 0;  // sigev_value
  int notify = 0;      // SIGEV_SIGNAL (0), SIGEV_NONE (1), SIGEV_THREAD (2), | SIGEV_THREAD_ID (4)
  pid_t target = 0;    // the pid or (SIGEV_THREAD_ID) tid signalled
  int clockid = 0;
};
Result<std::vector<PosixTimerInfo>> parse_posix_timers(std::string_view text);

// /proc/sysvipc/shm: the System V shared memory segments of this IPC namespace.
struct SysvShmInfo {
  int key = 0, id = 0;
  uint32_t perms = 0;  // mode, with SHM_DEST (01000) and SHM_LOCKED (02000)
  uint64_t size = 0;
  uint64_t nattch = 0;
  uint32_t uid = 0, gid = 0;
};
Result<std::vector<SysvShmInfo>> parse_sysv_shm(std::string_view text);

std::vector<pid_t> parse_pid_list(std::string_view text);

// Readers.
Result<std::vector<pid_t>> list_threads(pid_t pid);
Result<std::vector<pid_t>> list_children(pid_t pid, pid_t tid);
Result<std::vector<int>> list_fds(pid_t pid);
// Whether a descriptor of a process other than this one satisfies match,
// called with the process's /proc/PID/fd directory (open) and the
// descriptor's name in it. A walk of all /proc: for rare questions.
Result<bool> any_other_process_fd(const std::function<bool(int fd_dir, const char* name)>& match);
Result<Stat> read_stat(pid_t pid);
Result<Status> read_status(pid_t pid);

}  // namespace cryo::proc
