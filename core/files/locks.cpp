#include "core/files/locks.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <sstream>

#include "core/sys/io.h"
#include "core/sys/proc.h"

namespace cryo::files {

Result<std::vector<LockEntry>> parse_locks(std::string_view text) {
  std::vector<LockEntry> out;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string id, kind, advisory, mode, pid, dev, start, end;
    words >> id >> kind;
    if (kind == "->") continue;  // a request waiting for the lock
    words >> advisory >> mode >> pid >> dev >> start >> end;
    if (end.empty()) return Error(EINVAL, "bad /proc/locks line '" + line + "'");
    LockEntry e;
    e.kind = kind;
    e.state = advisory;
    e.mode = mode;
    e.write = mode == "WRITE";
    unsigned long long ino = 0;
    if (std::sscanf(dev.c_str(), "%x:%x:%llu", &e.dev_major, &e.dev_minor, &ino) != 3)
      return Error(EINVAL, "bad device in /proc/locks line '" + line + "'");
    e.inode = ino;
    try {
      e.pid = std::stoi(pid);
      e.start = std::stoll(start);
      e.length = end == "EOF" ? 0 : std::stoll(end) - e.start + 1;
    } catch (...) {
      return Error(EINVAL, "bad number in /proc/locks line '" + line + "'");
    }
    out.push_back(e);
  }
  return out;
}

namespace {

bool is_description_lock(const LockEntry& lock) { return lock.kind == "OFDLCK" || lock.kind == "LEASE"; }

// OFD locks and leases, from the "lock:" lines of each fd's fdinfo (which
// show those of its own description): each description's once, in a holder
// (for a lease, the process that took it where it still holds the file).
Status dump_description_locks(const tree::FrozenTree& tree, std::map<pid_t, image::Process>& cores) {
  struct Holder {
    pid_t pid;
    int fd;
    std::vector<LockEntry> locks;
  };
  std::vector<Holder> descriptions;  // one entry per description with such locks
  for (const auto& p : tree.processes()) {
    if (p.zombie) continue;
    CRYO_ASSIGN(auto fds, proc::list_fds(p.pid));
    for (int fd : fds) {
      std::string what = "pid " + std::to_string(p.pid) + " fd " + std::to_string(fd);
      auto info = read_file("/proc/" + std::to_string(p.pid) + "/fdinfo/" + std::to_string(fd));
      if (!info.ok()) continue;  // closed meanwhile cannot happen in a frozen tree; a racing read is harmless
      std::string lines;
      for (size_t at = 0; (at = info->find("\nlock:", at)) != std::string::npos; at++) {
        size_t from = info->find(':', at) + 1, eol = info->find('\n', from);
        lines += info->substr(from, eol == std::string::npos ? std::string::npos : eol - from + 1);
      }
      if (lines.empty()) continue;
      CRYO_ASSIGN(auto locks, parse_locks(lines));
      std::erase_if(locks, [](const LockEntry& l) { return !is_description_lock(l); });
      if (locks.empty()) continue;
      for (const auto& l : locks)
        if (l.kind == "LEASE" && (l.state != "ACTIVE" || (l.mode != "READ" && l.mode != "WRITE")))
          return Error(what + ": a lease being broken (" + l.state + " " + l.mode +
                       ") cannot be taken again as it is (dump again once the break is over)");
      auto same = std::find_if(descriptions.begin(), descriptions.end(), [&](const Holder& h) {
        return ::syscall(SYS_kcmp, h.pid, p.pid, KCMP_FILE, h.fd, fd) == 0;
      });
      if (same == descriptions.end()) {
        descriptions.push_back({p.pid, fd, std::move(locks)});
        continue;
      }
      // The lease's taker keeps it if it holds the description too.
      bool taker = std::any_of(locks.begin(), locks.end(), [&](const LockEntry& l) { return l.pid == p.pid; });
      if (taker && same->pid != p.pid) *same = Holder{p.pid, fd, std::move(locks)};
    }
  }
  for (const auto& h : descriptions) {
    for (const auto& lock : h.locks) {
      auto* l = cores.at(h.pid).add_locks();
      l->set_kind(lock.kind == "LEASE" ? image::FileLock::LEASE : image::FileLock::OFD);
      l->set_write(lock.write);
      l->set_start(lock.start);
      l->set_length(lock.length);
      l->set_fd(h.fd);
    }
  }
  return {};
}

}  // namespace

Status dump_locks(const tree::FrozenTree& tree, std::map<pid_t, image::Process>& cores) {
  CRYO_TRY(dump_description_locks(tree, cores));
  CRYO_ASSIGN(std::string text, read_file("/proc/locks"));
  CRYO_ASSIGN(auto locks, parse_locks(text));
  for (const auto& lock : locks) {
    if (is_description_lock(lock)) continue;
    // Other kinds naming no pid: refuse if a file of the tree carries one.
    bool ofd = lock.pid <= 0;
    for (const auto& p : tree.processes()) {
      if (p.zombie || (!ofd && p.pid != lock.pid)) continue;
      CRYO_ASSIGN(auto fds, proc::list_fds(p.pid));
      for (int fd : fds) {
        struct stat st;
        if (::stat(("/proc/" + std::to_string(p.pid) + "/fd/" + std::to_string(fd)).c_str(), &st) < 0) continue;
        if (major(st.st_dev) != lock.dev_major || minor(st.st_dev) != lock.dev_minor || st.st_ino != lock.inode)
          continue;
        std::string what = "pid " + std::to_string(p.pid) + " fd " + std::to_string(fd);
        if (lock.kind != "POSIX" && lock.kind != "FLOCK")
          return Error(what + ": " + lock.kind + " locks are not supported yet");
        auto* l = cores.at(p.pid).add_locks();
        l->set_kind(lock.kind == "POSIX" ? image::FileLock::POSIX : image::FileLock::FLOCK);
        l->set_write(lock.write);
        l->set_start(lock.start);
        l->set_length(lock.length);
        l->set_fd(fd);
        break;
      }
    }
  }
  return {};
}

LockCall lock_call(const image::FileLock& l) {
  LockCall c{};
  c.fd = static_cast<uint64_t>(l.fd());
  if (l.kind() == image::FileLock::FLOCK) {
    c.nr = SYS_flock;
    c.arg = static_cast<uint64_t>((l.write() ? LOCK_EX : LOCK_SH) | LOCK_NB);
    return c;
  }
  c.nr = SYS_fcntl;
  if (l.kind() == image::FileLock::LEASE) {
    c.arg = F_SETLEASE;
    c.third = static_cast<uint64_t>(l.write() ? F_WRLCK : F_RDLCK);
    return c;
  }
  c.arg = l.kind() == image::FileLock::OFD ? F_OFD_SETLK : F_SETLK;
  c.needs_flock_struct = true;
  c.fl.l_type = static_cast<short>(l.write() ? F_WRLCK : F_RDLCK);
  c.fl.l_whence = SEEK_SET;
  c.fl.l_start = l.start();
  c.fl.l_len = l.length();
  return c;
}

}  // namespace cryo::files
