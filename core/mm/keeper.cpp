#include "core/mm/keeper.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>
#include <vector>

#include "core/sys/io.h"
#include "core/sys/log.h"
#include "core/sys/proc.h"
#include "core/sys/util.h"

namespace cryo::mm {
namespace {

constexpr const char* kKeeperComm = "cryo-keeper";
// A file per tracked process, named by its pid, that names its keeper:
// "KEEPER_PID START_TIME".
constexpr const char* kEntryDir = "/run/cryo-keepers";
std::string entry_of(pid_t tracked) { return std::string(kEntryDir) + "/" + std::to_string(tracked); }

// /proc/PID/stat field 22 (start time in clock ticks since boot) and comm.
Result<std::pair<uint64_t, std::string>> identity(pid_t pid) {
  CRYO_ASSIGN(std::string text, read_file("/proc/" + std::to_string(pid) + "/stat"));
  size_t open = text.find('('), close = text.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open)
    return Error(EINVAL, "/proc/" + std::to_string(pid) + "/stat: unreadable");
  std::istringstream rest(text.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; i++)
    if (i == 22) return std::make_pair(static_cast<uint64_t>(std::stoull(field)), text.substr(open + 1, close - open - 1));
  return Error(EINVAL, "/proc/" + std::to_string(pid) + "/stat: too short");
}

// The keeper's life, after fork: only system calls, no allocation (cryo has
// other threads, whose locks the fork may have copied taken). entries[i] is
// the file that names it for the process watch[i] watches: removed as that
// process exits, and all of them as the keeper does.
[[noreturn]] void keep(int go, const int* keep_fds, size_t nkeep, struct pollfd* watch, const char* const* entries,
                       size_t nwatch) {
  auto leave = [&](int code) {
    for (size_t i = 0; i < nwatch; i++)
      if (watch[i].fd >= 0) ::unlink(entries[i]);
    ::_exit(code);
  };
  ::prctl(PR_SET_NAME, kKeeperComm);
  ::prctl(PR_SET_PDEATHSIG, 0);
  ::setsid();  // out of the terminal's reach (a Ctrl-C for cryo's job)
  for (int sig = 1; sig < 32; sig++)
    if (sig != SIGKILL && sig != SIGSTOP) ::signal(sig, sig == SIGTERM ? SIG_DFL : SIG_IGN);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // Nothing of cryo's but what it keeps: a caller reading cryo's output to
  // its end must not wait for the keeper.
  int prev = -1;
  for (size_t i = 0; i < nkeep; i++) {  // keep_fds is sorted
    if (keep_fds[i] > prev + 1) ::syscall(SYS_close_range, prev + 1, keep_fds[i] - 1, 0);
    prev = keep_fds[i];
  }
  ::syscall(SYS_close_range, prev + 1, ~0U, 0);
  int null = ::open("/dev/null", O_RDWR);
  if (null >= 0 && null != 0) ::close(null);  // fds 0-2 are closed: /dev/null takes 0
  if (::chdir("/") < 0) {}
  // Until cryo commits the image: a cryo that dies first ends the keeper.
  char byte = 0;
  ssize_t got;
  do got = ::read(go, &byte, 1);
  while (got < 0 && errno == EINTR);
  if (got != 1) leave(0);
  ::close(go);
  // Then as long as a tracked process lives.
  for (;;) {
    size_t alive = 0;
    for (size_t i = 0; i < nwatch; i++) alive += watch[i].fd >= 0;
    if (alive == 0) leave(0);
    int n = ::poll(watch, nwatch, -1);
    if (n < 0 && errno != EINTR) leave(1);
    for (size_t i = 0; i < nwatch; i++)
      if (watch[i].fd >= 0 && watch[i].revents) {
        ::close(watch[i].fd);
        watch[i].fd = -1;  // poll skips negative fds
        ::unlink(entries[i]);
      }
  }
}

// Whether pid holds a pidfd of the process `of` (fdinfo's Pid line; -1
// once that process has exited).
bool holds_pidfd_of(pid_t pid, pid_t of) {
  auto fds = proc::list_fds(pid);
  if (!fds.ok()) return false;
  std::string dir = "/proc/" + std::to_string(pid);
  for (int fd : *fds) {
    auto target = read_link(dir + "/fd/" + std::to_string(fd));
    if (!target.ok() || *target != "anon_inode:[pidfd]") continue;
    auto text = read_file(dir + "/fdinfo/" + std::to_string(fd));
    auto info = text.ok() ? proc::parse_fdinfo(*text) : Result<proc::FdInfo>(std::move(text).error());
    if (!info.ok()) continue;
    auto it = info->fields.find("Pid");
    if (it != info->fields.end() && it->second == std::to_string(of)) return true;
  }
  return false;
}

// Kills the keeper `pidfd` names and waits until its files are closed,
// then removes the names of it that are left.
void end_keeper(int pidfd, pid_t keeper) {
  ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
  struct pollfd wait = {pidfd, POLLIN, 0};
  while (::poll(&wait, 1, 5000) < 0 && errno == EINTR) {}
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(kEntryDir, ec)) {
    auto names = read_file(entry.path().string());
    pid_t named = 0;
    if (names.ok() && (std::istringstream(*names) >> named) && named == keeper) ::unlink(entry.path().c_str());
  }
}

}  // namespace

Result<Keeper> Keeper::start(const std::map<pid_t, UniqueFd>& uffds) {
  Keeper k;
  std::vector<UniqueFd> pidfds;
  std::vector<struct pollfd> watch;
  std::vector<int> keep_fds;
  for (const auto& [pid, fd] : uffds) {
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd.valid()) continue;  // exited meanwhile: nothing to keep for it
    watch.push_back({pidfd.get(), POLLIN, 0});
    k.entries_.push_back(entry_of(pid));
    keep_fds.push_back(pidfd.get());
    keep_fds.push_back(fd.get());
    k.fds_[pid] = fd.get();
    pidfds.push_back(std::move(pidfd));
  }
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) < 0) return errno_error("pipe for the keeper");
  UniqueFd read_end(pipefd[0]);
  k.go_ = UniqueFd(pipefd[1]);
  keep_fds.push_back(read_end.get());
  std::sort(keep_fds.begin(), keep_fds.end());
  std::vector<const char*> entries;
  for (const auto& e : k.entries_) entries.push_back(e.c_str());
  pid_t child = ::fork();
  if (child < 0) return errno_error("fork the keeper of write tracking");
  if (child == 0) keep(read_end.get(), keep_fds.data(), keep_fds.size(), watch.data(), entries.data(), watch.size());
  k.pid_ = child;
  k.pidfd_ = UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, child, 0)));
  auto id = identity(child);
  if (!id.ok()) return std::move(id).error().wrap("the keeper of write tracking");
  k.start_time_ = id->first;
  return k;
}

Keeper::~Keeper() {
  if (pid_ <= 0 || !go_.valid()) return;
  // Not committed: the keeper reads end of file and exits; reap it.
  go_.reset();
  int status;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {}
}

void Keeper::describe(image::WriteTracking* out) const {
  out->set_keeper_pid(pid_);
  out->set_keeper_start_time(start_time_);
  for (const auto& [pid, fd] : fds_) {
    auto* p = out->add_processes();
    p->set_pid(pid);
    p->set_keeper_fd(fd);
  }
}

void Keeper::commit() {
  // Named before it goes on: it removes each name as its process exits.
  ::mkdir(kEntryDir, 0700);
  std::string names = std::to_string(pid_) + " " + std::to_string(start_time_) + "\n";
  for (const auto& entry : entries_)
    if (auto st = write_file_atomic(entry, names, Durability::kCacheOnly); !st.ok())
      log::warn(st.error().message() + ": a dump without this pre-dump as parent will not find its tracking");
  char byte = 1;
  if (::write(go_.get(), &byte, 1) != 1) log::warn("the keeper of write tracking did not take the commit");
  go_.reset();
  // cryo exits soon: the keeper goes to the reaper of orphans.
}

Result<std::map<pid_t, UniqueFd>> take_from_keeper(const image::WriteTracking& tracking) {
  std::map<pid_t, UniqueFd> out;
  if (tracking.keeper_pid() <= 0) return out;
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, tracking.keeper_pid(), 0)));
  if (!pidfd.valid()) return out;  // gone
  // The pid is the keeper's only if it started when the image says (read
  // after the pidfd was opened, which then names that very process).
  auto id = identity(tracking.keeper_pid());
  if (!id.ok() || id->first != tracking.keeper_start_time() || id->second != kKeeperComm) return out;
  for (const auto& p : tracking.processes()) {
    if (p.keeper_fd() < 0) continue;
    UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), p.keeper_fd(), 0)));
    if (!fd.valid()) {
      log::warn("write tracking of pid " + std::to_string(p.pid()) + " is gone: its memory is saved whole");
      continue;
    }
    out[p.pid()] = std::move(fd);
  }
  // One holder at a time: the keeper ends now (its files with it).
  end_keeper(pidfd.get(), tracking.keeper_pid());
  return out;
}

void end_keepers_of(const std::vector<pid_t>& pids) {
  for (pid_t tracked : pids) {
    auto names = read_file(entry_of(tracked));
    if (!names.ok()) continue;  // (the usual case: no pre-dump tracks it)
    pid_t keeper = 0;
    uint64_t start_time = 0;
    std::istringstream(*names) >> keeper >> start_time;
    UniqueFd pidfd(keeper > 0 ? static_cast<int>(::syscall(SYS_pidfd_open, keeper, 0)) : -1);
    auto id = pidfd.valid() ? identity(keeper) : Result<std::pair<uint64_t, std::string>>(Error(ESRCH, "gone"));
    // Its keeper, if it still holds a pidfd of this very process (not of an
    // earlier one that had its pid).
    if (!id.ok() || id->first != start_time || id->second != kKeeperComm || !holds_pidfd_of(keeper, tracked)) {
      ::unlink(entry_of(tracked).c_str());
      continue;
    }
    log::info(pid_str(tracked) + ": the write tracking of a pre-dump (kept by pid " + std::to_string(keeper) +
              ") ends: this dump has no parent image");
    end_keeper(pidfd.get(), keeper);
  }
}

}  // namespace cryo::mm
