#include "core/cgroup/freezer.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "core/guard/guard.h"
#include "core/sys/io.h"

namespace cryo::cgroup {
namespace {

bool has(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// The directories of a cgroup and of every cgroup below it.
void collect_dirs(const std::string& dir, std::vector<std::string>* out) {
  out->push_back(dir);
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (const dirent* e = ::readdir(d))
    if (e->d_type == DT_DIR && e->d_name[0] != '.') collect_dirs(dir + "/" + e->d_name, out);
  ::closedir(d);
}

}  // namespace

Result<Freezer> Freezer::open(const std::string& dir) {
  Freezer f;
  f.dir_ = dir;
  while (f.dir_.size() > 1 && f.dir_.back() == '/') f.dir_.pop_back();
  if (has(f.dir_ + "/cgroup.freeze")) {
    f.v2_ = true;
  } else if (!has(f.dir_ + "/freezer.state")) {
    return Error(EINVAL, "--freeze-cgroup " + dir + " is not a freezer cgroup (it has neither cgroup.freeze nor "
                                                    "freezer.state; a hierarchy's root cannot be frozen)");
  }
  CRYO_ASSIGN(f.was_frozen_, f.is_frozen());
  return f;
}

Freezer::Freezer(Freezer&& other) noexcept { *this = std::move(other); }

Freezer& Freezer::operator=(Freezer&& other) noexcept {
  if (this != &other) {
    unwatch();
    dir_ = std::move(other.dir_);
    v2_ = other.v2_;
    was_frozen_ = other.was_frozen_;
    watcher_ = std::exchange(other.watcher_, -1);
    watcher_pipe_ = std::exchange(other.watcher_pipe_, -1);
  }
  return *this;
}

Freezer::~Freezer() { unwatch(); }

Result<bool> Freezer::is_frozen() const {
  if (v2_) {
    CRYO_ASSIGN(std::string value, read_file(dir_ + "/cgroup.freeze"));
    return value.starts_with("1");
  }
  CRYO_ASSIGN(std::string state, read_file(dir_ + "/freezer.state"));
  return !state.starts_with("THAWED");
}

Status Freezer::write_state(bool frozen) {
  std::string file = dir_ + (v2_ ? "/cgroup.freeze" : "/freezer.state");
  CRYO_ASSIGN(UniqueFd fd, open_file(file, O_WRONLY | O_CLOEXEC));
  return write_all(fd.get(), v2_ ? (frozen ? "1" : "0") : (frozen ? "FROZEN" : "THAWED")).wrap(file);
}

Status Freezer::request_freeze() { return write_state(true); }

Status Freezer::thaw() { return write_state(false); }

Status Freezer::restore_state() { return write_state(was_frozen_); }

Status Freezer::freeze(int timeout_ms) {
  CRYO_TRY(write_state(true));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (int nap_us = 50;; nap_us = std::min(nap_us * 2, 10000)) {
    if (v2_) {
      CRYO_ASSIGN(std::string events, read_file(dir_ + "/cgroup.events"));
      if (events.find("frozen 1") != std::string::npos) return {};
    } else {
      // FREEZING until every task (of the cgroups below too) is in the refrigerator.
      CRYO_ASSIGN(std::string state, read_file(dir_ + "/freezer.state"));
      if (state.starts_with("FROZEN")) return {};
    }
    if (std::chrono::steady_clock::now() > deadline) {
      if (!was_frozen_) (void)thaw();
      return Error(ETIMEDOUT, "cgroup " + dir_ + " did not freeze within " + std::to_string(timeout_ms) + " ms");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(nap_us));
  }
}

Result<std::vector<pid_t>> Freezer::threads() const {
  std::vector<std::string> dirs;
  collect_dirs(dir_, &dirs);
  std::vector<pid_t> tids;
  for (const auto& d : dirs) {
    // v2: cgroup.threads lists the threads of a domain cgroup too.
    auto text = read_file(d + (v2_ ? "/cgroup.threads" : "/tasks"));
    if (!text.ok()) {
      if (d == dir_) return std::move(text).error();
      continue;  // removed meanwhile
    }
    const char* p = text->c_str();
    for (char* end; *p; p = *end ? end + 1 : end) {
      long tid = std::strtol(p, &end, 10);
      if (end == p) break;
      tids.push_back(static_cast<pid_t>(tid));
    }
  }
  return tids;
}

Status Freezer::watch() {
  std::string file = dir_ + (v2_ ? "/cgroup.freeze" : "/freezer.state");
  CRYO_ASSIGN(UniqueFd state, open_file(file, O_WRONLY | O_CLOEXEC));
  const char* value = v2_ ? (was_frozen_ ? "1" : "0") : (was_frozen_ ? "FROZEN" : "THAWED");
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) < 0) return errno_error("pipe2");
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    return errno_error("fork the freezer watcher");
  }
  if (pid == 0) {
    // Async-signal-safe calls only (cryo may have threads): wait for cryo's
    // word, or for the end of file that comes once cryo and every guard it
    // started have exited (a guard gives threads back only while their
    // cgroup runs), then put the cgroup back as cryo found it.
    ::setsid();  // a Ctrl-C meant for cryo does not reach the watcher
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) ::signal(sig, SIG_IGN);
    // Out of the way first (either may sit at 3 or 4), then into place.
    int word_fd = ::fcntl(pipe_fds[0], F_DUPFD, 1024), state_fd = ::fcntl(state.get(), F_DUPFD, 1024);
    if (word_fd < 0 || state_fd < 0 || ::dup2(word_fd, 3) < 0 || ::dup2(state_fd, 4) < 0) ::_exit(1);
    ::syscall(SYS_close_range, 5, ~0U, 0);
    char word = 0;
    ssize_t n;
    while ((n = ::read(3, &word, 1)) < 0 && errno == EINTR) {
    }
    if (n == 1 && word == 'D') ::_exit(0);
    (void)!::write(4, value, __builtin_strlen(value));
    ::_exit(0);
  }
  ::close(pipe_fds[0]);
  watcher_ = pid;
  watcher_pipe_ = pipe_fds[1];
  guards_hold(watcher_pipe_);
  return {};
}

void Freezer::unwatch() {
  if (watcher_pipe_ < 0) return;
  guards_hold(-1);
  (void)!::write(watcher_pipe_, "D", 1);
  ::close(watcher_pipe_);
  watcher_pipe_ = -1;
  while (::waitpid(watcher_, nullptr, 0) < 0 && errno == EINTR) {
  }
  watcher_ = -1;
}

}  // namespace cryo::cgroup
