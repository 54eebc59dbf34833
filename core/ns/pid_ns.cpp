#include "core/ns/pid_ns.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <set>

#include "core/ns/namespaces.h"
#include "core/sys/io.h"
#include "core/sys/kernel_abi.h"
#include "core/sys/proc.h"
#include "core/sys/util.h"

namespace cryo::ns {
namespace {

std::string pid_ns_of(pid_t pid, const char* which = "pid") {
  auto link = read_link("/proc/" + std::to_string(pid) + "/ns/" + which);
  return link.ok() ? *link : "";
}

// The pid a thread has in the innermost namespace it lives in.
Result<pid_t> innermost(pid_t pid, pid_t tid) {
  CRYO_ASSIGN(std::string text,
              read_file("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/status"));
  CRYO_ASSIGN(proc::Status st, proc::parse_status(text));
  if (st.nspid.empty()) return Error(EINVAL, "no NSpid in the status of thread " + std::to_string(tid));
  return st.nspid.back();
}

// Processes of the namespace that the tree does not hold: a process that
// entered it with setns (`nsenter`, `runc exec`) has its parent outside.
Status check_all_in_tree(const tree::FrozenTree& tree, const std::string& ns) {
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir("/proc"), ::closedir);
  if (!dir) return errno_error("opendir /proc");
  while (struct dirent* d = ::readdir(dir.get())) {
    char* end;
    pid_t pid = static_cast<pid_t>(std::strtol(d->d_name, &end, 10));
    if (*end != '\0' || pid <= 0 || tree.contains(pid)) continue;
    if (pid_ns_of(pid) == ns) {
      auto comm = read_file("/proc/" + std::to_string(pid) + "/comm");
      return Error(pid_str(pid) + " (" + (comm.ok() ? comm->substr(0, comm->find('\n')) : "?") +
                   ") is in the pid namespace of the tree but not in the tree (it entered it from outside); "
                   "it would be lost");
    }
  }
  return {};
}

}  // namespace

Result<PidMap> PidMap::of_tree(const tree::FrozenTree& tree) {
  PidMap map;
  const auto& procs = tree.processes();
  pid_t root = procs.front().pid;
  std::string ns = pid_ns_of(root);
  for (const auto& p : procs) {
    // A pid namespace made for children that are yet to come (unshare
    // without a fork) would be lost: its init does not exist yet.
    std::string children = pid_ns_of(p.pid, "pid_for_children");
    if (!p.zombie && !children.empty() && children != pid_ns_of(p.pid))
      return Error(pid_str(p.pid) + " has made a pid namespace for its children (not supported yet)");
  }
  CRYO_ASSIGN(std::string own, read_link("/proc/self/ns/pid"));
  if (ns == own) return map;
  map.own_ = true;
  CRYO_ASSIGN(pid_t root_inner, innermost(root, root));
  if (root_inner != 1)
    return Error(pid_str(root) + " is pid " + std::to_string(root_inner) +
                 " of a pid namespace of its own, not its init (dump the namespace's pid 1)");
  for (const auto& p : procs) {
    if (pid_ns_of(p.pid) != ns)
      return Error(pid_str(p.pid) + " is in a pid namespace of its own inside the tree (not supported yet)");
    for (pid_t tid : p.tids) {
      CRYO_ASSIGN(map.inner_[tid], innermost(p.pid, tid));
    }
  }
  CRYO_TRY(check_all_in_tree(tree, ns));
  return map;
}

pid_t PidMap::inner(pid_t host) const {
  if (!own_) return host;
  auto it = inner_.find(host);
  return it == inner_.end() ? 0 : it->second;
}

void PidMap::translate(image::Tree* tree) const {
  if (!own_) return;
  tree->set_own_pid_ns(true);
  for (auto& t : *tree->mutable_tasks()) {
    t.set_pid(inner(t.pid()));
    if (t.ppid()) t.set_ppid(inner(t.ppid()));
    t.set_pgid(inner(t.pgid()));
    t.set_sid(inner(t.sid()));
    for (auto& tid : *t.mutable_tids()) tid = inner(tid);
  }
}

void PidMap::translate(image::Process* core) const {
  if (!own_) return;
  core->set_pid(inner(core->pid()));
  for (auto& t : *core->mutable_threads()) t.set_tid(inner(t.tid()));
  for (auto& t : *core->mutable_posix_timers())
    if (t.tid()) t.set_tid(inner(t.tid()));
}

Status PidMap::check_files(const std::map<pid_t, image::Process>& cores, const image::Files& files) const {
  if (!own_) return {};
  std::map<uint32_t, const image::FileDesc*> by_id;
  for (const auto& f : files.files()) by_id[f.id()] = &f;
  for (const auto& [pid, core] : cores)
    for (const auto& fd : core.fds()) {
      auto it = by_id.find(fd.file_id());
      if (it != by_id.end() && it->second->proc_pid())
        return Error(pid_str(pid) + " fd " + std::to_string(fd.fd()) + ": " + it->second->path() +
                     " is a file of cryo's /proc, whose pids are not those of the tree's own pid namespace "
                     "(not supported yet)");
    }
  return {};
}

void PidMap::translate(image::Files* files) const {
  if (!own_) return;
  for (auto& f : *files->mutable_files()) {
    if (f.pidfd_target()) f.set_pidfd_target(inner(f.pidfd_target()));
    if (f.has_owner() && f.owner().pid()) f.mutable_owner()->set_pid(inner(f.owner().pid()));
    if (f.has_epoll()) f.mutable_epoll()->set_owner(inner(f.epoll().owner()));
    if (f.has_socket() && f.socket().cred_pid()) f.mutable_socket()->set_cred_pid(inner(f.socket().cred_pid()));
  }
  for (auto& p : *files->mutable_ptys()) {
    if (p.sid()) p.set_sid(inner(p.sid()));
    if (p.pgrp()) p.set_pgrp(inner(p.pgrp()));
  }
}

namespace {

// The worker's own view: the namespace's pids in a /proc of its own.
Status enter_worker() {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // dies with the restorer, its tracees with it
  // The restorer is outside the namespace (pid 0 here); an orphan would
  // have the namespace's init for a parent.
  if (::getppid() != 0) return Error(ECHILD, "the restorer is gone");
  if (::unshare(CLONE_NEWNS) < 0) return errno_error("unshare(CLONE_NEWNS) for the restorer's /proc");
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) < 0) return errno_error("making / a slave mount");
  if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) < 0)
    return errno_error("mounting the tree's /proc");
  return {};
}

}  // namespace

Result<pid_t> fork_into(pid_t root, const image::Tree& tree, const std::function<int(Status)>& body) {
  std::set<pid_t> used;
  for (const auto& t : tree.tasks()) used.insert(t.tids().begin(), t.tids().end());
  pid_t pid_max = 32768;
  if (auto text = read_file("/proc/sys/kernel/pid_max"); text.ok()) pid_max = static_cast<pid_t>(std::atoi(text->c_str()));
  pid_t worker = pid_max - 1;
  while (used.count(worker)) worker--;

  CRYO_ASSIGN(UniqueFd back, open_file("/proc/self/ns/pid_for_children", O_RDONLY | O_CLOEXEC));
  CRYO_TRY(join("/proc/" + std::to_string(root) + "/ns/pid", CLONE_NEWPID));
  abi::CloneArgs args{};
  args.exit_signal = SIGCHLD;
  args.set_tid = reinterpret_cast<uint64_t>(&worker);
  args.set_tid_size = 1;
  long got = ::syscall(SYS_clone3, &args, sizeof args);
  int saved = errno;
  if (got != 0) {
    auto st = join_fd(back.get(), CLONE_NEWPID, "back into cryo's pid namespace for children");
    if (got < 0) return Error(saved, "clone3 of the restorer into the tree's pid namespace (as pid " +
                                         std::to_string(worker) + ")");
    if (!st.ok()) {
      ::kill(static_cast<pid_t>(got), SIGKILL);
      return std::move(st).error();
    }
    return static_cast<pid_t>(got);
  }
  ::_exit(body(enter_worker()));
}

Result<pid_t> child_with_inner_pid(pid_t parent, pid_t inner) {
  CRYO_ASSIGN(auto children, proc::list_children(parent, parent));
  for (pid_t child : children) {
    auto got = innermost(child, child);
    if (got.ok() && *got == inner) return child;
  }
  return Error(ESRCH, "no child of " + pid_str(parent) + " is pid " + std::to_string(inner) + " in its namespace");
}

}  // namespace cryo::ns
