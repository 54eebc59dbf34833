#include "core/files/proc_files.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <sys/syscall.h>

#include <algorithm>
#include <map>

namespace cryo::files {
namespace {

#ifndef NSFS_MAGIC
constexpr long NSFS_MAGIC = 0x6e736673;
#endif

// "net:[4026531840]" -> its file in /proc/PID/ns of a process of the tree
// that is in that namespace ("/proc/PID/ns/net", or ".../pid_for_children").
Result<std::pair<pid_t, std::string>> namespace_file(const struct stat& st, const std::string& link, const tree::FrozenTree& tree) {
  std::string type = link.substr(0, link.find(':'));
  if (type.empty() || type.find('/') != std::string::npos) return Error(link + " is not a namespace file cryo knows");
  for (const auto& p : tree.processes()) {
    if (p.zombie) continue;
    for (const std::string& name : {type, type + "_for_children"}) {
      struct stat ns;
      std::string path = "/proc/" + std::to_string(p.pid) + "/ns/" + name;
      if (::stat(path.c_str(), &ns) == 0 && ns.st_ino == st.st_ino && ns.st_dev == st.st_dev)
        return std::make_pair(p.pid, path);
    }
  }
  return Error(link + " is a namespace no process of the tree is in (not supported: only the tree's own "
                      "namespaces come back)");
}

bool in_tree(pid_t target, const tree::FrozenTree& tree) {
  for (const auto& p : tree.processes())
    if (p.pid == target || std::find(p.tids.begin(), p.tids.end(), target) != p.tids.end()) return true;
  return false;
}

}  // namespace

Result<bool> describe_proc_file(pid_t pid, int fd, const struct stat& st, const std::string& link,
                                const tree::FrozenTree& tree, image::FileDesc* f) {
  std::string what = "pid " + std::to_string(pid) + " fd " + std::to_string(fd);
  std::string source = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
  struct statfs fs;
  if (::statfs(source.c_str(), &fs) < 0) return errno_error(what + ": statfs");
  if (fs.f_type == NSFS_MAGIC) {
    auto ns = namespace_file(st, link, tree);
    if (!ns.ok()) return std::move(ns).error().wrap(what);
    // Opened again like a file of /proc of that process, by the holder once
    // the process is back in its (restored) namespaces.
    f->set_kind(image::FileDesc::REGULAR);
    f->set_path(ns->second);
    f->set_proc_pid(ns->first);
    return true;
  }
  if (fs.f_type != PROC_SUPER_MAGIC) return false;
  // The link is the path the process sees ("/proc/self/..." reads
  // "/proc/PID/..."); files of /proc that belong to no process (meminfo,
  // sys/...) are reopened by their path like any other file.
  constexpr std::string_view kProc = "/proc/";
  if (!link.starts_with(kProc)) return Error(what + ": " + link + " is on a proc filesystem not mounted at /proc");
  size_t end = link.find('/', kProc.size());
  std::string component = link.substr(kProc.size(), end == std::string::npos ? std::string::npos : end - kProc.size());
  if (component.empty() || !std::all_of(component.begin(), component.end(), ::isdigit)) return false;
  pid_t target = static_cast<pid_t>(std::stol(component));
  if (!in_tree(target, tree))
    return Error(what + ": " + link + " is a file of pid " + component +
                 ", outside the tree (not supported: it would be another process's after a restore)");
  f->set_kind(S_ISDIR(st.st_mode) ? image::FileDesc::DIRECTORY : image::FileDesc::REGULAR);
  f->set_path(link);
  f->set_proc_pid(target);
  return true;
}

Status reopen_proc_files(ptrace::Remote& r, pid_t pid, uint64_t scratch, const image::Process& core,
                         const image::Files& files) {
  std::map<uint32_t, int> opened;  // file id -> the fd it was opened at first
  for (const auto& fd : core.fds()) {
    if (fd.file_id() == 0 || fd.file_id() > static_cast<uint32_t>(files.files_size())) continue;
    const auto& f = files.files(static_cast<int>(fd.file_id() - 1));
    if (f.proc_pid() == 0) continue;
    std::string what = f.path() + " at fd " + std::to_string(fd.fd());
    uint64_t cloexec = fd.cloexec() ? O_CLOEXEC : 0;
    if (auto it = opened.find(f.id()); it != opened.end()) {  // a dup of one opened already
      CRYO_ASSIGN(long moved, r.raw(SYS_dup3, {static_cast<uint64_t>(it->second), static_cast<uint64_t>(fd.fd()), cloexec}));
      if (moved < 0) return Error(static_cast<int>(-moved), what + ": dup3");
      continue;
    }
    if (f.path().size() >= 4000 || !f.path().starts_with("/proc/")) return Error(EINVAL, what + ": not a file of /proc");
    CRYO_TRY(ptrace::write_memory(pid, scratch, f.path().c_str(), f.path().size() + 1));
    constexpr uint32_t kOpenOnly = O_CREAT | O_EXCL | O_TRUNC;
    CRYO_ASSIGN(long made, r.raw(SYS_openat, {static_cast<uint64_t>(AT_FDCWD), scratch,
                                             (f.flags() & ~kOpenOnly) | O_CLOEXEC}));
    if (made < 0) return Error(static_cast<int>(-made), what + ": open it again");
    long status = 0;
    if (f.pos() != 0) {
      CRYO_ASSIGN(status, r.raw(SYS_lseek, {static_cast<uint64_t>(made), f.pos(), SEEK_SET}));
    }
    if (status >= 0) {
      CRYO_ASSIGN(status, r.raw(SYS_dup3, {static_cast<uint64_t>(made), static_cast<uint64_t>(fd.fd()), cloexec}));
    }
    (void)r.raw(SYS_close, {static_cast<uint64_t>(made)});
    if (status < 0) return Error(static_cast<int>(-status), what + ": seek to " + std::to_string(f.pos()) + " and dup3");
    opened[f.id()] = fd.fd();
  }
  return {};
}

}  // namespace cryo::files
