#include "core/net/unix_names.h"

#include <fcntl.h>
#include <sched.h>
#include <linux/capability.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <vector>

#include "core/sys/fd.h"
#include "core/sys/io.h"
#include "core/sys/scope_guard.h"

namespace cryo::net {
namespace {

// sock_diag reports the kernel's device number (major << 20 | minor).
bool same_file(const struct stat& st, uint64_t kdev, uint64_t ino) {
  return st.st_ino == ino && major(st.st_dev) == (kdev >> 20) && minor(st.st_dev) == (kdev & 0xfffff);
}

bool leads_to(const std::string& dir, const std::string& name, uint64_t kdev, uint64_t ino) {
  struct stat st;
  std::string path = dir == "/" ? "/" + name : dir + "/" + name;
  return ::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && same_file(st, kdev, ino);
}

Result<std::string> read_link(const std::string& path) {
  char buf[PATH_MAX];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  if (n < 0 || n == static_cast<ssize_t>(sizeof buf)) return errno_error("readlink " + path);
  return std::string(buf, static_cast<size_t>(n));
}

pid_t parent_of(pid_t pid) {
  char buf[512];
  UniqueFd fd(::open(("/proc/" + std::to_string(pid) + "/stat").c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return 0;
  ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
  if (n <= 0) return 0;
  buf[n] = 0;
  const char* close = std::strrchr(buf, ')');
  int ppid = 0;
  char state;
  if (!close || std::sscanf(close + 1, " %c %d", &state, &ppid) != 2) return 0;
  return ppid;
}

// Below `top`, breadth first, a bounded number of directories (not across
// mounts: a name is bound where the binder's relative path led).
std::string search_below(const std::string& top, const std::string& name, uint64_t kdev, uint64_t ino) {
  std::deque<std::pair<std::filesystem::path, int>> todo = {{top, 0}};
  struct stat top_st;
  if (::stat(top.c_str(), &top_st) < 0) return {};
  int visited = 0;
  while (!todo.empty() && visited < 20000) {
    auto [dir, depth] = todo.front();
    todo.pop_front();
    visited++;
    if (leads_to(dir.string(), name, kdev, ino)) return dir.string();
    if (depth >= 6) continue;
    std::error_code ec;
    for (std::filesystem::directory_iterator it(dir, std::filesystem::directory_options::skip_permission_denied, ec), end;
         !ec && it != end; it.increment(ec)) {
      struct stat st;
      if (::lstat(it->path().c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_dev == top_st.st_dev)
        todo.emplace_back(it->path(), depth + 1);
    }
  }
  return {};
}

}  // namespace

bool is_relative_unix_name(const std::string& name) { return !name.empty() && name[0] != '\0' && name[0] != '/'; }

Result<std::string> find_bound_dir(pid_t pid, const std::string& name, uint64_t kdev, uint64_t ino) {
  // Where its process and its ancestors work now, and the directories above.
  std::vector<std::string> cwds;
  for (pid_t p = pid; p > 1 && cwds.size() < 64; p = parent_of(p)) {
    auto cwd = read_link("/proc/" + std::to_string(p) + "/cwd");
    if (cwd.ok() && !cwd->empty() && (*cwd)[0] == '/') cwds.push_back(*cwd);
  }
  for (const auto& cwd : cwds)
    for (std::filesystem::path dir = cwd;; dir = dir.parent_path()) {
      if (leads_to(dir.string(), name, kdev, ino)) return dir.string();
      if (dir == dir.root_path() || dir.empty()) break;
    }
  for (const auto& cwd : cwds)
    if (cwd != "/") {
      std::string found = search_below(cwd, name, kdev, ino);
      if (!found.empty()) return found;
    }
  return Error(ENOENT, "its directory was not found (neither above nor below the working directory of the process "
                       "and its ancestors)");
}

Result<std::string> unix_path(const image::SockAddr& a) {
  const std::string& name = a.addr();
  if (a.family() != AF_UNIX || name.empty() || name[0] == '\0') return std::string();
  if (name[0] == '/') return name;
  if (a.dir().empty() || a.dir()[0] != '/') return Error(EINVAL, "unix socket name " + name + " without its directory");
  return a.dir() == "/" ? "/" + name : a.dir() + "/" + name;
}

namespace {
int names_ns = -1;
uid_t names_fsuid = 0;
gid_t names_fsgid = 0;

// Makes names as fsuid and fsgid, keeping the capabilities a change of
// fsuid from 0 drops (to chown them as the image says).
Status take_fs_ids() {
  if (names_fsuid == 0 && names_fsgid == 0) return {};
  ::setfsgid(names_fsgid);
  ::setfsuid(names_fsuid);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &header, data) < 0) return errno_error("capget");
  for (auto& d : data) d.effective = d.permitted;
  if (::syscall(SYS_capset, &header, data) < 0) return errno_error("capset");
  return {};
}
}  // namespace

void set_unix_names_ns(int mount_ns, uid_t fsuid, gid_t fsgid) {
  names_ns = mount_ns;
  names_fsuid = fsuid;
  names_fsgid = fsgid;
}

Status with_unix_names(const std::function<Status()>& fn) {
  if (names_ns < 0) return fn();
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) < 0) return errno_error("pipe2");
  UniqueFd from_child(ends[0]), to_parent(ends[1]);
  pid_t child = ::fork();
  if (child < 0) return errno_error("fork");
  if (child == 0) {
    from_child.reset();
    Status st = ::setns(names_ns, CLONE_NEWNS) == 0 ? take_fs_ids() : errno_error("joining the tree's mount namespace");
    if (st.ok()) st = fn();
    std::string report = st.ok() ? "ok" : std::to_string(st.error().code()) + " " + st.error().context();
    (void)write_all(to_parent.get(), report);
    ::_exit(0);
  }
  to_parent.reset();
  auto report = read_fd(from_child.get());
  while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
  }
  if (!report.ok()) return std::move(report).error();
  if (*report == "ok") return {};
  if (report->empty()) return Error(EIO, "the child that works in the tree's mount namespace died");
  return Error(std::atoi(report->c_str()), report->substr(std::min(report->size(), report->find(' ') + 1)));
}

Status in_bound_dir(const image::SockAddr& a, const std::function<Status()>& fn) {
  if (a.family() != AF_UNIX || !is_relative_unix_name(a.addr())) return fn();
  if (a.dir().empty() || a.dir()[0] != '/') return Error(EINVAL, "unix socket name " + a.addr() + " without its directory");
  UniqueFd here(::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!here.valid()) return errno_error("open the working directory");
  if (::chdir(a.dir().c_str()) < 0) return errno_error("chdir " + a.dir());
  Status st = fn();
  if (::fchdir(here.get()) < 0) return errno_error("back to the working directory");
  return st;
}

Status bind_unlinked(int s, const image::SockAddr& a, const sockaddr* addr, socklen_t len,
                     const std::function<Status()>& while_bound) {
  if (names_ns >= 0)  // (the dump refuses them)
    return Error(EINVAL, "an unlinked unix socket name in the tree's own mount namespace (not supported yet)");
  CRYO_ASSIGN(std::string path, unix_path(a));
  std::filesystem::path p(path);
  // Directories removed since: made for the bind, removed again after.
  std::vector<std::string> made;
  ScopeGuard remove_dirs([&] {
    for (auto it = made.rbegin(); it != made.rend(); ++it) ::rmdir(it->c_str());
  });
  std::vector<std::filesystem::path> missing;
  struct stat st;
  for (auto dir = p.parent_path(); !dir.empty() && ::lstat(dir.c_str(), &st) < 0 && errno == ENOENT;
       dir = dir.parent_path())
    missing.push_back(dir);
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (::mkdir(it->c_str(), 0700) < 0) return errno_error("mkdir " + it->string());
    made.push_back(it->string());
  }
  // Whatever took the name since (a file, another socket) steps aside meanwhile.
  std::string aside;
  if (::lstat(path.c_str(), &st) == 0) {
    aside = path + ".cryo-aside-" + std::to_string(::getpid());
    if (::rename(path.c_str(), aside.c_str()) < 0) return errno_error("move " + path + " aside");
  }
  ScopeGuard put_back([&] {
    if (!aside.empty()) ::rename(aside.c_str(), path.c_str());
  });
  CRYO_TRY(in_bound_dir(a, [&]() -> Status {
    if (::bind(s, addr, len) < 0) return errno_error("bind");
    return {};
  }));
  Status done = while_bound();
  if (::unlink(path.c_str()) < 0 && done.ok()) return errno_error("unlink " + path);
  return done;
}

}  // namespace cryo::net
