#include "core/ns/pid_ns.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
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

// The pids a thread has in each namespace from cryo's to its own (NSpid).
Result<std::vector<pid_t>> nspids(pid_t pid, pid_t tid) {
  CRYO_ASSIGN(std::string text,
              read_file("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/status"));
  CRYO_ASSIGN(proc::Status st, proc::parse_status(text));
  if (st.nspid.empty()) return Error(EINVAL, "no NSpid in the status of thread " + std::to_string(tid));
  return st.nspid;
}

// The pid a thread has in the innermost namespace it lives in.
Result<pid_t> innermost(pid_t pid, pid_t tid) {
  CRYO_ASSIGN(auto ids, nspids(pid, tid));
  return ids.back();
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
  CRYO_ASSIGN(std::string own, read_link("/proc/self/ns/pid"));
  map.own_ = ns != own;
  CRYO_ASSIGN(auto root_ids, nspids(root, root));
  size_t level = root_ids.size() - 1;  // the tree's namespace, as an index into NSpid
  if (map.own_ && root_ids.back() != 1)
    return Error(pid_str(root) + " is pid " + std::to_string(root_ids.back()) +
                 " of a pid namespace of its own, not its init (dump the namespace's pid 1)");
  std::map<pid_t, std::string> ns_of;  // a process's pid namespace
  for (const auto& p : procs) ns_of[p.pid] = pid_ns_of(p.pid);
  std::set<std::string> nested;  // namespaces below the tree's
  for (const auto& p : procs) {
    for (pid_t tid : p.tids) {
      CRYO_ASSIGN(auto ids, nspids(p.pid, tid));
      if (ids.size() <= level) return Error(pid_str(tid) + " is outside the tree's pid namespace");
      map.inner_[tid] = ids[level];
      if (ids.size() > level + 1) map.nested_[tid].assign(ids.begin() + static_cast<long>(level) + 1, ids.end());
    }
    if (ns_of[p.pid] != ns) {
      CRYO_TRY(check_nested_member(p, procs));
      nested.insert(ns_of[p.pid]);
    }
    // A pid namespace made for children (unshare(CLONE_NEWPID)) comes back
    // when one of them lives in it; one made for children yet to come would
    // be lost: its init does not exist yet.
    std::string children = pid_ns_of(p.pid, "pid_for_children");
    if (p.zombie || children.empty() || children == ns_of[p.pid]) continue;
    auto child = std::find_if(procs.begin(), procs.end(), [&](const tree::FrozenProcess& c) {
      return c.stat.ppid == p.pid && ns_of[c.pid] == children;
    });
    if (child == procs.end())
      return Error(pid_str(p.pid) + " has made a pid namespace for children it has not forked yet (not supported yet)");
    map.children_ns_[p.pid] = child->pid;
  }
  // Each nested namespace comes back from its init, and whole.
  for (const auto& n : nested) {
    bool init = std::any_of(procs.begin(), procs.end(), [&](const tree::FrozenProcess& p) {
      return ns_of[p.pid] == n && map.nested_.count(p.pid) && map.nested_.at(p.pid).back() == 1;
    });
    if (!init) return Error("the init of " + n + ", nested in the tree's, is not in the tree");
    CRYO_TRY(check_all_in_tree(tree, n));
  }
  if (map.own_) CRYO_TRY(check_all_in_tree(tree, ns));
  return map;
}

// A process of a nested namespace: the restore makes it with its pids at
// every level, but calls it makes itself (setpgid, setsid) would see its
// namespace's pids, which the image does not keep for others: it must lead
// its group and session or share its parent's.
Status PidMap::check_nested_member(const tree::FrozenProcess& p, const std::vector<tree::FrozenProcess>& procs) {
  auto parent = std::find_if(procs.begin(), procs.end(),
                             [&](const tree::FrozenProcess& q) { return q.pid == p.stat.ppid; });
  if (parent == procs.end()) return Error(pid_str(p.pid) + " is in a nested pid namespace whose parent is not in the tree");
  if (p.stat.pgid != p.pid && p.stat.pgid != parent->stat.pgid)
    return Error(pid_str(p.pid) + " is in a nested pid namespace and in process group " + std::to_string(p.stat.pgid) +
                 ", neither its own nor its parent's (not supported yet)");
  if (p.stat.sid != p.pid && p.stat.sid != parent->stat.sid)
    return Error(pid_str(p.pid) + " is in a nested pid namespace and in session " + std::to_string(p.stat.sid) +
                 ", neither its own nor its parent's (not supported yet)");
  return {};
}

pid_t PidMap::inner(pid_t host) const {
  if (!own_) return host;
  auto it = inner_.find(host);
  return it == inner_.end() ? 0 : it->second;
}

void PidMap::translate(image::Tree* tree) const {
  for (auto& t : *tree->mutable_tasks()) {  // by cryo's pids, before they change
    if (auto it = nested_.find(t.pid()); it != nested_.end()) *t.mutable_ns_pids() = {it->second.begin(), it->second.end()};
    if (auto it = children_ns_.find(t.pid()); it != children_ns_.end()) t.set_children_pid_ns(inner(it->second));
  }
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
  for (auto& t : *core->mutable_threads())
    if (auto it = nested_.find(t.tid()); it != nested_.end()) *t.mutable_ns_tids() = {it->second.begin(), it->second.end()};
  if (!own_) return;
  core->set_pid(inner(core->pid()));
  for (auto& t : *core->mutable_threads()) t.set_tid(inner(t.tid()));
  for (auto& t : *core->mutable_posix_timers())
    if (t.tid()) t.set_tid(inner(t.tid()));
}

Status PidMap::check_nested(const std::map<pid_t, image::Process>& cores, const image::Files& files) const {
  if (nested_.empty()) return {};
  std::map<uint32_t, const image::FileDesc*> by_id;
  for (const auto& f : files.files()) by_id[f.id()] = &f;
  for (const auto& [pid, core] : cores) {
    if (!nested_.count(pid)) continue;
    // The restore sets these with calls the process makes itself, which
    // would read the image's pids in its own namespace.
    for (const auto& t : core.posix_timers())
      if (t.tid())
        return Error(pid_str(pid) + ": a POSIX timer aimed at thread " + std::to_string(t.tid()) +
                     ", in a nested pid namespace (not supported yet)");
    for (const auto& fd : core.fds()) {
      auto it = by_id.find(fd.file_id());
      if (it != by_id.end() && it->second->has_owner() && it->second->owner().pid())
        return Error(pid_str(pid) + " fd " + std::to_string(fd.fd()) + ": a signal owner (F_SETOWN), in a nested pid "
                     "namespace (not supported yet)");
    }
  }
  for (const auto& p : files.ptys())
    for (pid_t who : {p.sid(), p.pgrp()})
      if (who > 0 && nested_.count(who))
        return Error("/dev/pts/" + std::to_string(p.index()) + ": its session or foreground group is led by " +
                     pid_str(who) + ", in a nested pid namespace (not supported yet)");
  return {};
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
    if (f.ctty_sid()) f.set_ctty_sid(inner(f.ctty_sid()));
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
