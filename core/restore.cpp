#include "core/restore.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "core/cgroup/copies.h"
#include "core/cgroup/tree_cgroups.h"
#include "core/files/files_restore.h"
#include "core/files/sysv_shm.h"
#include "core/files/tty.h"
#include "core/image_load.h"
#include "core/image/image.h"
#include "core/image/proto/files.pb.h"
#include "core/image/proto/mm.pb.h"
#include "core/image/proto/task.pb.h"
#include "core/image/proto/tree.pb.h"
#include "core/lazy/handover.h"
#include "core/mm/mm_restore.h"
#include "core/guard/guard.h"
#include "core/sys/failpoint.h"
#include "core/hooks/actions.h"
#include "core/net/netlock.h"
#include "core/net/tcp_states.h"
#include "core/net/unix_names.h"
#include "core/ns/ipc_ns.h"
#include "core/ns/mount_ns.h"
#include "core/ns/net_ns.h"
#include "core/ns/pid_ns.h"
#include "core/ns/user_ns.h"
#include "core/ptrace/ptrace.h"
#include "core/sys/fdpass.h"
#include "core/sys/io.h"
#include "core/sys/interrupt.h"
#include "core/sys/log.h"
#include "core/sys/progress.h"
#include "core/sys/util.h"
#include "core/sys/proc.h"
#include "core/sys/scope_guard.h"
#include "core/task/task_restore.h"
#include "core/tree/stubs.h"

namespace cryo {
namespace {

Status check_ids_free(const image::Tree& tree) {
  for (const auto& t : tree.tasks())
    for (int32_t tid : t.tids()) {
      std::string dir = "/proc/" + std::to_string(tid);
      if (::access(dir.c_str(), F_OK) == 0) {
        auto comm = read_file(dir + "/comm");
        std::string name = comm.ok() ? comm->substr(0, comm->find('\n')) : "?";
        return Error(EEXIST, "pid " + std::to_string(tid) + " is in use by '" + name + "' (pid " + std::to_string(tid) +
                                 "); the original tree must be gone before it is restored");
      }
    }
  return {};
}

// Maps the trampoline pages in the restorer, where every stub inherits them.
Result<mm::Trampoline> map_trampoline(const LoadedImage& img) {
  std::vector<std::pair<uint64_t, uint64_t>> used;
  for (const auto& [pid, mm] : img.mms)
    for (const auto& v : mm.vmas()) used.emplace_back(v.start(), v.end());
  CRYO_ASSIGN(std::string own_text, read_file("/proc/self/maps"));
  CRYO_ASSIGN(auto own, proc::parse_maps(own_text));
  for (const auto& m : own) used.emplace_back(m.start, m.end);
  uint64_t at = mm::find_hole(used, mm::Trampoline::kSize, 0x100000);
  if (!at) return Error(ENOMEM, "no room for the restore trampoline");
  void* p = ::mmap(reinterpret_cast<void*>(at), mm::Trampoline::kSize, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED) return errno_error("mmap trampoline");
  static const uint8_t kCode[] = {0x0f, 0x05, 0xcc};  // syscall; int3
  std::memcpy(p, kCode, sizeof kCode);
  static_assert(mm::Trampoline::kBatchLoopOffset >= sizeof kCode);
  std::memcpy(static_cast<uint8_t*>(p) + mm::Trampoline::kBatchLoopOffset, ptrace::kBatchLoop.data(),
              ptrace::kBatchLoop.size());
  if (::mprotect(p, 4096, PROT_READ | PROT_EXEC) < 0) return errno_error("mprotect trampoline");
  return mm::Trampoline{at, at + 4096};
}

// Kills and reaps everything a failed restore made.
void kill_tree(const tree::StubPlan& plan, pid_t root) {
  if (plan.own_pid_ns || plan.cryo_init) {  // the namespace dies with its init; the image's pids are not ours
    if (root > 0) {
      ::kill(root, SIGKILL);
      while (::waitpid(root, nullptr, __WALL) < 0 && errno == EINTR) {
      }
    }
    // The init's end waited for everything in its namespace, the worker cryo
    // forked into it too: reaped here. Other children of cryo (the holder of
    // the mount namespace) are not the tree's: their owners end them.
    while (::waitpid(-1, nullptr, __WALL | WNOHANG) > 0) {
    }
    return;
  }
  if (plan.session_stand_in) ::kill(plan.session_stand_in, SIGKILL);
  for (const auto& stand_in : plan.group_stand_ins) ::kill(stand_in.second, SIGKILL);
  if (root > 0) ::kill(root, SIGKILL);
  // Stubs we hold under ptrace are ours (a pid of the image may belong to an
  // unrelated process); the others die with their parent (PR_SET_PDEATHSIG).
  std::string me = std::to_string(::getpid());
  for (const auto& t : plan.tasks) {
    auto text = read_file("/proc/" + std::to_string(t.entry->pid()) + "/status");
    if (text.ok() && text->find("\nTracerPid:\t" + me + "\n") != std::string::npos) ::kill(t.entry->pid(), SIGKILL);
  }
  int status;
  for (;;) {
    pid_t r = ::waitpid(-1, &status, __WALL);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
  }
}

// Whether a pid is an ancestor's, or the ancestor itself, in the tree.
std::function<bool(pid_t, pid_t)> descends_in(const image::Tree& tree) {
  std::map<pid_t, pid_t> parent;
  for (const auto& t : tree.tasks()) parent[t.pid()] = t.ppid();
  return [parent = std::move(parent)](pid_t pid, pid_t ancestor) {
    for (int depth = 0; pid > 0 && depth < 4096; depth++) {
      if (pid == ancestor) return true;
      auto it = parent.find(pid);
      pid = it == parent.end() ? 0 : it->second;
    }
    return false;
  };
}

// The files in flight (SCM_RIGHTS) in sockets' queues: the restorer makes
// them before it fills the queues that carry them, so no stub makes them.
std::set<uint32_t> files_in_flight(const image::Files& files) {
  std::set<uint32_t> ids;
  for (const auto& f : files.files())
    if (f.kind() == image::FileDesc::SOCKET)
      for (const auto& d : f.socket().queue()) ids.insert(d.passed_file_ids().begin(), d.passed_file_ids().end());
  return ids;
}

// Unix sockets whose SO_PEERCRED names one process of the tree: a socketpair,
// or a listener and the connections made through it (linked by their names),
// every one of them made by that process, and held only by it or its
// descendants. That process makes them again itself.
std::vector<files::StubGroup> stub_groups(const LoadedImage& img) {
  auto descends = descends_in(img.tree);
  std::set<uint32_t> in_flight = files_in_flight(img.files);
  std::vector<const image::FileDesc*> socks;
  std::map<uint64_t, size_t> by_inode;
  for (const auto& f : img.files.files())
    if (f.kind() == image::FileDesc::SOCKET && f.socket().family() == AF_UNIX) {
      by_inode[f.socket().inode()] = socks.size();
      socks.push_back(&f);
    }
  // Union-find over the sockets that must be made together.
  std::vector<size_t> root(socks.size());
  for (size_t i = 0; i < root.size(); i++) root[i] = i;
  auto find = [&](size_t i) {
    while (root[i] != i) i = root[i] = root[root[i]];
    return i;
  };
  auto join = [&](size_t a, size_t b) { root[find(a)] = find(b); };
  for (size_t i = 0; i < socks.size(); i++) {
    const auto& s = socks[i]->socket();
    if (auto peer = by_inode.find(s.peer_inode()); peer != by_inode.end()) join(i, peer->second);
    for (size_t j = 0; j < socks.size(); j++) {
      const auto& l = socks[j]->socket();
      if (l.state() == image::Socket::LISTENING && !l.local().addr().empty() &&
          (s.peer().addr() == l.local().addr() || (i != j && s.local().addr() == l.local().addr())))
        join(i, j);
    }
  }
  std::map<size_t, std::vector<size_t>> groups;
  for (size_t i = 0; i < socks.size(); i++) groups[find(i)].push_back(i);
  std::vector<files::StubGroup> out;
  for (const auto& [r, members] : groups) {
    pid_t creator = socks[members.front()]->socket().cred_pid();
    bool ok = img.cores.count(creator) > 0;
    bool connected = false;
    for (size_t i : members) {
      const auto& s = socks[i]->socket();
      ok = ok && !s.local().unlinked() && s.cred_pid() == creator && !in_flight.count(socks[i]->id()) &&
           (s.state() == image::Socket::CONNECTED ? by_inode.count(s.peer_inode()) > 0
                                                  : s.state() == image::Socket::LISTENING);
      connected = connected || s.state() == image::Socket::CONNECTED;
    }
    if (!ok || !connected) continue;
    std::set<uint32_t> ids;
    for (size_t i : members) ids.insert(socks[i]->id());
    for (const auto& [pid, core] : img.cores)
      for (const auto& fd : core.fds())
        if (ids.count(fd.file_id()) && !descends(pid, creator)) ok = false;
    if (ok) out.push_back({creator, std::vector<uint32_t>(ids.begin(), ids.end())});
  }
  return out;
}

// The signal that stopped a task (its parent may still collect it as such).
int stop_signal(int recorded) {
  int sig = recorded & 0x7f;
  return sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU ? sig : SIGSTOP;
}

// A unix listener whose connections other processes of the tree made: the
// listener's maker listens and accepts, each connector connects again. All
// of them must reach their holders by fork (holders descend from them).
std::vector<files::ListenerGroup> listener_groups(const LoadedImage& img, const std::vector<files::StubGroup>& made) {
  std::set<uint32_t> taken;
  for (const auto& g : made) taken.insert(g.ids.begin(), g.ids.end());
  // A listener with a connection in flight (either end) is the restorer's
  // to make, with its connections.
  std::set<uint32_t> in_flight = files_in_flight(img.files);
  auto descends = descends_in(img.tree);
  auto holders_below = [&](uint32_t id, pid_t ancestor) {
    for (const auto& [pid, core] : img.cores)
      for (const auto& fd : core.fds())
        if (fd.file_id() == id && !descends(pid, ancestor)) return false;
    return true;
  };
  std::map<uint64_t, const image::FileDesc*> by_inode;
  for (const auto& f : img.files.files())
    if (f.kind() == image::FileDesc::SOCKET && f.socket().family() == AF_UNIX) by_inode[f.socket().inode()] = &f;
  std::vector<files::ListenerGroup> out;
  for (const auto& [inode, l] : by_inode) {
    const auto& ls = l->socket();
    if (ls.state() != image::Socket::LISTENING || ls.local().addr().empty() || ls.local().unlinked() ||
        taken.count(l->id()) || in_flight.count(l->id()))
      continue;
    pid_t creator = ls.cred_pid();
    if (!img.cores.count(creator) || !holders_below(l->id(), creator)) continue;
    files::ListenerGroup group{creator, l->id(), {}};
    bool ok = true;
    for (const auto& [ino, f] : by_inode) {
      const auto& s = f->socket();
      if (s.state() != image::Socket::CONNECTED || s.peer().addr() != ls.local().addr() || taken.count(f->id())) continue;
      auto server_it = by_inode.find(s.peer_inode());
      if (server_it == by_inode.end()) continue;
      const auto& server = *server_it->second;
      pid_t connector = server.socket().cred_pid();
      bool fits = s.type() != SOCK_DGRAM && s.cred_pid() == creator && img.cores.count(connector) &&
                  descends(connector, creator) && holders_below(f->id(), connector) &&
                  holders_below(server.id(), creator) && !s.shutdown_read() && !s.shutdown_write() &&
                  !server.socket().shutdown_read() && !server.socket().shutdown_write() &&
                  server.socket().local().addr() == ls.local().addr() && !in_flight.count(f->id()) &&
                  !in_flight.count(server.id());
      if (!fits) {
        ok = false;
        break;
      }
      group.connections.push_back({connector, f->id(), server.id()});
    }
    if (ok && !group.connections.empty()) out.push_back(std::move(group));
  }
  return out;
}

// The tree's cgroups made again with their properties, and each process
// back into its own, before its memory is charged there.
Status join_cgroups(const tree::StubPlan& plan, const image::Tree& tree, const RestoreOptions& options,
                    const std::vector<cgroup::CgroupRoot>& roots, std::vector<std::string>* created) {
  std::vector<cgroup::TaskCgroups> tasks;
  for (const auto& t : plan.tasks) {
    if (!t.core) continue;
    auto& task = tasks.emplace_back(cgroup::TaskCgroups{t.entry->pid(), {}});
    for (const auto& c : t.core->cgroups()) task.memberships.push_back({c.controllers(), c.path()});
  }
  return cgroup::restore_tree_cgroups(tree, std::move(tasks), options.manage_cgroups, roots, created);
}

// The cgroups a failed restore made, deepest first, once their tasks are gone.
void remove_cgroups(const std::vector<std::string>& dirs) {
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it)
    for (int attempt = 0; attempt < 100 && ::rmdir(it->c_str()) < 0 && errno == EBUSY; attempt++) ::usleep(10000);
}

// Who gets each description's SIGIO/SIGURG: set through a copy of a
// holder's fd, once every process (any of them may be the owner) exists.
Status restore_file_owners(const LoadedImage& img) {
  std::map<uint32_t, std::pair<pid_t, int>> holder;
  for (const auto& [pid, core] : img.cores)
    for (const auto& fd : core.fds()) holder.emplace(fd.file_id(), std::make_pair(pid, fd.fd()));
  for (const auto& f : img.files.files()) {
    if (!f.has_owner() || f.kind() == image::FileDesc::INHERITED) continue;
    auto it = holder.find(f.id());
    if (it == holder.end()) continue;  // held by no fd (a mapping's file)
    auto [pid, fd] = it->second;
    std::string what = "file " + std::to_string(f.id()) + " (" + pid_str(pid) + " fd " + std::to_string(fd) + ")";
    CRYO_ASSIGN(UniqueFd copy, copy_fd(pid, fd).wrap(what));
    struct f_owner_ex owner = {static_cast<enum __pid_type>(f.owner().type()), f.owner().pid()};
    if (::fcntl(copy.get(), F_SETOWN_EX, &owner) < 0)
      return errno_error("F_SETOWN_EX to " + std::to_string(owner.pid)).wrap(what);
    if (::fcntl(copy.get(), F_SETSIG, f.owner().signum()) < 0) return errno_error("F_SETSIG").wrap(what);
  }
  return {};
}

// Runs the action scripts of a stage (with the root's pid as cryo sees it).
using ActionRunner = std::function<Status(hooks::Action)>;

// Runs body in a worker inside the tree's pid namespace (see
// ns::fork_into). The worker reports back through a pipe: the cgroups it
// made (which the restorer removes should the restore fail), then its
// verdict. A failed worker exits at once: its tracees die with it, and the
// restorer's cleanup kills the namespace's init and everything with it.
// go_write: the restorer's end of the pipe whose EOF lets zombies go,
// which only the worker may close now. The worker asks the restorer to run
// action scripts (`action N` lines, answered on a pipe of their own): they
// run in cryo's namespaces, with the root's pid as cryo sees it.
Status bring_up_in_pid_ns(pid_t root, const image::Tree& tree,
                          const std::function<Status(const ActionRunner&)>& body,
                          const ActionRunner& run_action, std::vector<std::string>* made_cgroups,
                          UniqueFd& go_write) {
  int ends[2], answers[2];
  if (::pipe2(ends, O_CLOEXEC) < 0) return errno_error("pipe2");
  UniqueFd from_worker(ends[0]), to_restorer(ends[1]);
  if (::pipe2(answers, O_CLOEXEC) < 0) return errno_error("pipe2");
  UniqueFd answer_read(answers[0]), answer_write(answers[1]);
  // In the worker: one request, one answer line ("ok" or "error CODE TEXT").
  ActionRunner ask = [&](hooks::Action action) -> Status {
    CRYO_TRY(write_all(to_restorer.get(), "action " + std::to_string(static_cast<int>(action)) + "\n"));
    std::string line;
    for (char c; line.empty() || line.back() != '\n';) {
      ssize_t n = ::read(answer_read.get(), &c, 1);
      if (n == 1) line += c;
      else if (n == 0) return Error("the restorer did not answer for the action scripts");
      else if (errno != EINTR) return errno_error("reading the restorer's answer");
    }
    if (line == "ok\n") return {};
    return Error(line.substr(0, line.size() - 1));
  };
  CRYO_ASSIGN(pid_t worker, ns::fork_into(root, tree, [&](Status ready) {
                from_worker.reset();
                answer_write.reset();
                Status st = ready.ok() ? body(ask) : std::move(ready).error().wrap("the restorer in the tree's pid namespace");
                std::string report;
                for (const auto& dir : *made_cgroups) report += "cgroup " + dir + "\n";
                if (st.ok()) {
                  report += "ok\n";
                } else {
                  std::string text = st.error().context();
                  std::replace(text.begin(), text.end(), '\n', ' ');
                  report += "error " + std::to_string(st.error().code()) + " " + text + "\n";
                }
                (void)write_all(to_restorer.get(), report);
                return st.ok() ? 0 : 1;
              }));
  to_restorer.reset();
  answer_read.reset();
  go_write.reset();
  std::string report, pending;
  char buf[4096];
  for (bool forwarded = false;;) {
    ssize_t n = ::read(from_worker.get(), buf, sizeof buf);
    if (n > 0) {
      pending.append(buf, static_cast<size_t>(n));
      // Whole lines: an action the worker waits for is run and answered at
      // once; the rest is its report.
      for (size_t end; (end = pending.find('\n')) != std::string::npos; pending.erase(0, end + 1)) {
        if (!pending.starts_with("action ")) {
          report += pending.substr(0, end + 1);
          continue;
        }
        auto action = static_cast<hooks::Action>(std::atoi(pending.substr(7, end - 7).c_str()));
        Status st = run_action(action);
        std::string text = st.ok() ? "" : st.error().message();
        std::replace(text.begin(), text.end(), '\n', ' ');
        (void)write_all(answer_write.get(), st.ok() ? "ok\n" : text + "\n");
      }
    } else if (n == 0) {
      report += pending;
      break;
    } else if (errno == EINTR) {
      if (interrupted() && !forwarded) ::kill(worker, interrupted());  // it stops at its next step
      forwarded = forwarded || interrupted();
    } else {
      return errno_error("reading the report of the restorer in the tree's pid namespace");
    }
  }
  int status = 0;
  while (::waitpid(worker, &status, 0) < 0 && errno == EINTR) {
  }
  Status verdict = Error(ECHILD, "the restorer in the tree's pid namespace ended without a verdict");
  for (auto line : proc::split_lines(report)) {
    if (line.starts_with("cgroup ")) made_cgroups->emplace_back(line.substr(7));
    if (line == "ok" && WIFEXITED(status) && WEXITSTATUS(status) == 0) verdict = {};
    if (line.starts_with("error ")) {
      line.remove_prefix(6);
      size_t sp = line.find(' ');
      verdict = Error(std::atoi(std::string(line.substr(0, sp)).c_str()),
                      std::string(sp == std::string_view::npos ? "" : line.substr(sp + 1)));
    }
  }
  return verdict;
}

// Moves cryo into the roots of the tree's cgroup namespace (made if missing,
// as --manage-cgroups says), keeping where it was in `own`.
Status enter_cgroup_ns_roots(const image::Tree& tree, cgroup::Manage mode, const cgroup::CopyCgroups& copy,
                             std::vector<cgroup::Membership>* own, std::vector<std::string>* created) {
  CRYO_ASSIGN(std::string text, read_file("/proc/self/cgroup"));
  CRYO_ASSIGN(*own, cgroup::parse_proc_cgroup(text));
  CRYO_ASSIGN(auto hierarchies, cgroup::host_hierarchies());
  std::vector<cgroup::Membership> roots;
  for (const auto& r : tree.cgroup_ns()) {
    std::string path = r.path();
    if (auto move = copy.moves.find(r.controllers()); move != copy.moves.end())  // a copy's cgroups of its own
      path = cgroup::rebase_path(path, move->second.first, move->second.second).value_or(path);
    roots.push_back({r.controllers(), path});
  }
  if (mode == cgroup::Manage::kIgnore) mode = cgroup::Manage::kSoft;  // the namespace needs its roots
  return cgroup::join(::getpid(), roots, hierarchies, mode, created).wrap("the roots of the tree's cgroup namespace");
}

Status leave_cgroup_ns_roots(const std::vector<cgroup::Membership>& own) {
  CRYO_ASSIGN(auto hierarchies, cgroup::host_hierarchies());
  std::vector<std::string> none;
  return cgroup::join(::getpid(), own, hierarchies, cgroup::Manage::kExisting, &none).wrap("back into cryo's cgroups");
}

// The tree's user namespace (none when it shares cryo's), and from inside
// it its network namespace; what cryo makes from outside it takes
// the host's ids from here on (see core/ns/user_ns.h).
Result<std::optional<ns::UserNsMaker>> make_user_ns(LoadedImage* img, const RestoreOptions& options) {
  if (!img->tree.has_user_ns()) return std::optional<ns::UserNsMaker>();
  // Pids are given (clone3's set_tid) by a process with CAP_CHECKPOINT_RESTORE
  // in the user namespace that owns the pid namespace. In cryo's, a tree in
  // a user namespace of its own can only get its root's back: the root
  // joins its user namespace before it forks or clones a thread.
  size_t tasks = 0;
  for (const auto& t : img->tree.tasks()) tasks += std::max(t.tids_size(), 1);
  if (!img->tree.own_pid_ns() && !options.new_pidns && tasks > 1)
    return Error("the image's tree is in a user namespace of its own but in cryo's pid namespace: its " +
                 std::to_string(tasks) + " processes and threads get their pids back only in a pid namespace that "
                 "user namespace owns (clone3 set_tid needs CAP_CHECKPOINT_RESTORE there): restore it with --new-pidns");
  if (img->tree.has_net_ns() && (!options.net_ns.join.empty() || !img->tree.net_ns().external_key().empty()))
    return Error("the image's tree has a user namespace of its own: its network namespace cannot be an existing one");
  CRYO_TRY(ns::to_host_view(img->tree.user_ns(), &img->files, nullptr));
  CRYO_ASSIGN(auto made, ns::UserNsMaker::make(img->tree.user_ns(), img->tree.has_net_ns() ? CLONE_NEWNET : 0));
  return std::optional<ns::UserNsMaker>(std::move(made));
}

Status write_pidfile(const std::string& path, pid_t pid) {
  if (path.empty()) return {};
  return write_file_atomic(path, std::to_string(pid) + "\n");
}

// The connections the dump locked: a restore into a network namespace of
// the tree's own locks them there again while it puts them back.
std::vector<net::Connection> connections_to_lock(const image::Files& files) {
  std::vector<net::Connection> out;
  for (const auto& f : files.files()) {
    if (f.kind() != image::FileDesc::SOCKET) continue;
    const auto& s = f.socket();
    if (s.family() != AF_INET && s.family() != AF_INET6) continue;
    if (s.type() != SOCK_STREAM || s.state() != image::Socket::CONNECTED || s.tcp_closed() || s.reconnect()) continue;
    out.push_back({s.local(), s.peer()});
  }
  return out;
}

// With orphan_pts_master: a new pty for every terminal of the image that was
// outside the tree and that the caller does not hand over; the slaves join
// the inherited fds (kept open in *slaves), the masters go to the caller.
Result<std::vector<files::InheritFd>> orphan_ptys(const RestoreOptions& options, const image::Files& files,
                                                  std::vector<UniqueFd>* slaves) {
  std::vector<files::InheritFd> out = options.inherit_fds;
  if (!options.orphan_pts_master) return out;
  std::set<std::string> keys;
  for (const auto& f : files.files())
    if (f.kind() == image::FileDesc::INHERITED && f.inherit_key().starts_with("tty[")) keys.insert(f.inherit_key());
  for (const auto& in : options.inherit_fds) keys.erase(in.key);
  for (const auto& key : keys) {
    CRYO_ASSIGN(files::PtyPair pty, files::open_pty_pair().wrap("a new terminal for " + key));
    CRYO_TRY(options.orphan_pts_master(pty.master.get()).wrap("handing over the master of " + pty.slave_path));
    log::info("terminal " + key + " of the image is " + pty.slave_path + " now");
    out.push_back({pty.slave.get(), key});
    slaves->push_back(std::move(pty.slave));
  }
  return out;
}

}  // namespace

Result<RestoreResult> restore(const RestoreOptions& options) {
  RestoreResult result;
  uint64_t start = now_us();
  // Until the tree runs (a restore without -d then waits for its root).
  std::optional<progress::Reporter> report(std::in_place, "restore");
  progress::phase("reading the image");
  bool lazy_pages = !options.lazy_pages_socket.empty();
  CRYO_ASSIGN(auto reader, image::ImageDirReader::open(options.images_dir));
  if (reader.inventory().lazy_source() && !lazy_pages)
    return Error("the image was dumped with --lazy-pages: its memory stays with that dump, which serves it; restore "
                 "it with --lazy-pages while `cryo lazy-pages --page-server --address --port` brings it over");
  CRYO_TRY(options.actions.run(hooks::Action::kPreRestore));
  if (reader.inventory().shell_job() && !options.shell_job)
    return Error("the image was dumped with --shell-job; restore it with --shell-job");
  CRYO_ASSIGN(LoadedImage img, load_image(reader, lazy_pages));
  if (options.tcp_close) net::close_connections(&img.files);
  std::vector<UniqueFd> orphan_slaves;
  CRYO_ASSIGN(const std::vector<files::InheritFd> inherit_fds, orphan_ptys(options, img.files, &orphan_slaves));
  for (const auto& f : img.files.files())
    if (f.kind() == image::FileDesc::SOCKET && f.socket().family() != AF_UNIX && f.socket().type() == SOCK_STREAM &&
        f.socket().state() == image::Socket::CONNECTED && !f.socket().tcp_closed() && !options.tcp_established)
      return Error("the image holds TCP connections; restore it with --tcp-established (or --tcp-close)");
  // The network lock of the dump goes once the restored tree runs. A failed
  // or killed restore keeps it: the image stays restorable with its
  // connections (restore again, or drop it with `cryo network-unlock`).
  const auto& lock = img.files.network_lock();
  auto unlock = [&] {
    auto st = net::unlock_connections(lock.table(), lock.method());
    if (!st.ok()) log::error(st.error().message());
  };
  ScopeGuard keep_lock_note([&] {
    if (!lock.table().empty() && !img.tree.has_net_ns())  // else it went with the namespace
      log::error("the network lock " + lock.table() + " stays: restore again, or remove it with cryo network-unlock -D " +
                 options.images_dir);
  });
  if (options.new_pidns && img.tree.own_pid_ns())
    return Error("the image's tree has a pid namespace of its own already (restore it without --new-pidns)");
  bool pid_ns = img.tree.own_pid_ns() || options.new_pidns;
  // A user namespace of the tree's own comes first, with the empty
  // namespaces cryo fills from outside, made in it so that it owns them.
  CRYO_ASSIGN(auto user_ns, make_user_ns(&img, options));
  if (!pid_ns) CRYO_TRY(check_ids_free(img.tree));  // else a fresh namespace has them all

  std::vector<const image::Process*> cores;
  std::vector<const image::Process*> alive;
  for (const auto& t : img.tree.tasks()) {
    auto it = img.cores.find(t.pid());
    cores.push_back(it == img.cores.end() ? nullptr : &it->second);
    if (cores.back()) alive.push_back(cores.back());
  }
  struct rlimit nofile;
  if (::getrlimit(RLIMIT_NOFILE, &nofile) < 0) return errno_error("getrlimit(RLIMIT_NOFILE)");
  if (nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &nofile) < 0) return errno_error("setrlimit(RLIMIT_NOFILE)");
  }
  // Room for a copy of each file and the restore's own pipes, at least.
  int restorer_fds = img.files.files_size() + img.files.shmems_size() + img.files.contents_size() + 16;
  CRYO_ASSIGN(files::FdZone zone,
              files::fd_zone(alive, static_cast<int>(std::min<rlim_t>(nofile.rlim_cur, INT_MAX)), restorer_fds));
  files::FileObjects objects;
  objects.set_inherit_fds(ns::without_net_ns_key(img.tree, inherit_fds));
  auto groups = stub_groups(img);
  auto listeners = listener_groups(img, groups);
  // The tree's own mount namespace comes first: its files are opened in it.
  std::optional<ns::MountHolder> mounts;
  ScopeGuard forget_names([] { net::set_unix_names_ns(-1); });
  if (img.tree.has_mount_ns()) {
    std::string root_dir = options.root.empty() ? ns::default_root(img.tree.mount_ns()) : options.root;
    if (root_dir.empty())
      return Error("the tree had a mount namespace of its own whose root directory is unknown here: restore with --root DIR");
    if (options.root.empty() && ::access(root_dir.c_str(), F_OK) < 0)
      return Error("the root of the tree's mount namespace, " + root_dir + ", is gone: restore with --root DIR");
    CRYO_TRY(ns::map_external_mounts(img.tree.mutable_mount_ns(), options.external_mounts,
                                     !options.external_mounts_optional));
    CRYO_TRY(ns::map_terminal_mounts(img.tree.mutable_mount_ns(), inherit_fds));
    if (!options.cgroup_roots.empty() && !cores.empty() && cores[0]) {
      std::vector<cgroup::Membership> root_cgroups;
      for (const auto& c : cores[0]->cgroups()) root_cgroups.push_back({c.controllers(), c.path()});
      CRYO_ASSIGN(auto moves, cgroup::root_moves(root_cgroups, options.cgroup_roots));
      CRYO_TRY(ns::move_cgroup_binds(img.tree.mutable_mount_ns(), moves));
    }
    CRYO_ASSIGN(mounts, user_ns ? ns::MountHolder::build(img.tree.mount_ns(), root_dir, &img.tree.user_ns(), user_ns->user_fd())
                               : ns::MountHolder::build(img.tree.mount_ns(), root_dir));
    objects.set_tree_root(mounts->root_fd());
    if (user_ns) {  // its filesystems take the ids of the user namespace, whose root makes the names
      auto [uid, gid] = ns::host_ids_of_root(img.tree.user_ns());
      net::set_unix_names_ns(mounts->ns_fd(), uid, gid);
    } else {
      net::set_unix_names_ns(mounts->ns_fd());  // unix sockets are bound and reached by their names in it
    }
  } else if (!options.external_mounts.empty() && !options.external_mounts_optional) {
    return Error("--external mnt[" + options.external_mounts.begin()->first +
                 "]: the image's tree shares cryo's mount namespace, which has no mount of its own");
  } else if (!options.root.empty() && options.root != "/") {
    return Error("--root " + options.root + ": the image's tree shares cryo's mount namespace (only --root / fits it)");
  }
  // A network namespace of the tree's own: its sockets are made in it.
  // Its TCP connections are locked in it again before any device comes up,
  // until the tree runs: a segment of the peer's must not meet a socket
  // still in repair mode, or no socket (and be answered with a reset).
  UniqueFd net_ns;
  std::string ns_lock;
  {
    std::optional<ns::Scope> in_tree_net;
    if (img.tree.has_net_ns()) {
      auto lock_inside = [&]() -> Status {
        if (lock.method().empty()) return {};
        CRYO_ASSIGN(ns_lock, net::lock_connections(connections_to_lock(img.files), lock.method(), net::new_lock_table()));
        return {};
      };
      auto net_options = options.net_ns;
      if (user_ns) net_options.made = user_ns->net_fd();
      CRYO_ASSIGN(net_ns, ns::make_net_ns(img.tree.net_ns(), net_options, inherit_fds, lock_inside));
      CRYO_ASSIGN(auto scope, ns::Scope::enter(net_ns.get(), CLONE_NEWNET));
      in_tree_net.emplace(std::move(scope));
    } else if (!options.net_ns.join.empty()) {
      return Error(EINVAL, "--join-ns net:" + options.net_ns.join + ": the image's tree shared cryo's network namespace");
    }
    CRYO_TRY(objects.open_all(img.files, reader, zone, std::move(groups), std::move(listeners)).wrap("opening files"));
    if (img.tree.has_net_ns()) CRYO_TRY(ns::net_ns_sockets_made(img.tree.net_ns(), options.net_ns));
  }
  files::SysvSegments segments;  // declared before the tasks' cleanup: removed after they are gone
  CRYO_TRY(segments.prepare(img.files, reader));
  CRYO_ASSIGN(mm::Trampoline tramp, map_trampoline(img));
  ScopeGuard unmap_tramp([&] { ::munmap(reinterpret_cast<void*>(tramp.code), mm::Trampoline::kSize); });

  // Room for the memory parents hand down to their children, away from
  // every recorded mapping and from the restorer's own.
  std::vector<std::pair<uint64_t, uint64_t>> taken = {{tramp.code, tramp.code + mm::Trampoline::kSize}};
  for (const auto& [pid, mm] : img.mms)
    for (const auto& v : mm.vmas()) taken.emplace_back(v.start(), v.end());
  CRYO_ASSIGN(std::string own_maps, read_file("/proc/self/maps"));
  CRYO_ASSIGN(auto own, proc::parse_maps(own_maps));
  for (const auto& m : own) taken.emplace_back(m.start, m.end);
  CRYO_ASSIGN(mm::Premaps premaps, mm::Premaps::plan(img.tree, img.mms, std::move(taken)));
  CRYO_TRY(premaps.reserve());
  ScopeGuard release_premaps([&] { premaps.release(); });

  CRYO_ASSIGN(tree::StubPlan plan, tree::plan_stubs(img.tree, cores, reader.inventory().shell_job()));
  // The pipes between the restorer and its stubs, in the zone too.
  auto zone_pipe = [&zone]() -> Result<std::pair<UniqueFd, UniqueFd>> {
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) < 0) return errno_error("pipe2");
    UniqueFd read_end(ends[0]), write_end(ends[1]);
    CRYO_ASSIGN(UniqueFd read_placed, zone.copy(read_end.get()));
    CRYO_ASSIGN(UniqueFd write_placed, zone.copy(write_end.get()));
    return std::pair{std::move(read_placed), std::move(write_placed)};
  };
  CRYO_ASSIGN(auto status_pipe, zone_pipe());
  CRYO_ASSIGN(auto go_pipe, zone_pipe());
  UniqueFd status_read = std::move(status_pipe.first), status_write = std::move(status_pipe.second);
  UniqueFd go_read = std::move(go_pipe.first), go_write = std::move(go_pipe.second);
  plan.objects = &objects;
  plan.premaps = &premaps;
  plan.mms = &img.mms;
  plan.images = &reader;
  plan.files = &img.files;
  if (img.tree.has_uts()) plan.uts = &img.tree.uts();
  if (img.tree.has_ipc()) plan.ipc = &img.tree.ipc();
  plan.cgroup_ns = img.tree.cgroup_ns_size() > 0;
  // A second copy of the image running at once gets cgroups of its own.
  cgroup::CopyCgroups copy_cgroups;
  if (!cores.empty() && cores[0]) {
    CRYO_ASSIGN(copy_cgroups, cgroup::cgroups_for_copy(img.tree, *cores[0], options.manage_cgroups, options.cgroup_roots));
  }
  const auto& cgroup_roots = copy_cgroups.roots.empty() ? options.cgroup_roots : copy_cgroups.roots;
  if (plan.cgroup_ns && !options.cgroup_roots.empty())
    return Error("--cgroup-root: the tree has a cgroup namespace of its own, whose roots cannot move yet");
  if (img.tree.has_time_ns()) plan.time_ns = &img.tree.time_ns();
  plan.own_pid_ns = img.tree.own_pid_ns();
  plan.net_ns_fd = net_ns.valid() ? net_ns.get() : -1;
  if (user_ns) {
    plan.user_ns = &img.tree.user_ns();
    plan.user_ns_fd = user_ns->user_fd();
  }
  if (mounts) {
    plan.mount_ns = &img.tree.mount_ns();
    plan.mount_ns_fd = mounts->ns_fd();
  }
  if (plan.own_pid_ns && plan.session_stand_in)
    return Error(EINVAL, "the image's tree has a pid namespace of its own and a session from outside it");
  UniqueFd life_read, life_write;  // --new-pidns: see StubPlan::cryo_init
  if (options.new_pidns) {
    CRYO_ASSIGN(auto life, zone_pipe());
    life_read = std::move(life.first);
    life_write = std::move(life.second);
    plan.cryo_init = true;
    plan.init_life_fd = life_read.get();
    plan.init_life_write_fd = life_write.get();
  }
  plan.fd_zone = zone;
  plan.status_fd = status_write.get();
  plan.go_read_fd = go_read.get();
  plan.go_write_fd = go_write.get();

  // Orphans of a failed restore come back to us to be reaped.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  std::optional<lazy::HandoverClient> lazy;
  if (lazy_pages) {
    CRYO_ASSIGN(auto client, lazy::HandoverClient::connect(options.lazy_pages_socket));
    lazy.emplace(std::move(client));
    // A lazy migration's memory that processes share copy-on-write comes
    // now, before the forks that share it (userfaultfd would fill each
    // process's copy apart).
    for (const auto& [pid, mm] : img.mms)
      for (const auto* run : mm::remote_runs_written_here(pid, mm, premaps)) {
        CRYO_ASSIGN(auto bytes, lazy->fetch(pid, run->addr(), run->npages()).wrap(pid_str(pid)));
        premaps.add_fetched(pid, run->addr(), std::move(bytes));
      }
  }
  pid_t root = 0;
  std::vector<std::string> made_cgroups;
  ScopeGuard cleanup([&] {
    kill_tree(plan, root);
    remove_cgroups(made_cgroups);
  });

  log::info("creating " + std::to_string(plan.tasks.size()) + " processes");
  progress::phase("creating processes");
  {
    // The tree's cgroup namespace is rooted where its root is forked: the
    // restorer steps into those cgroups for the fork, and back.
    std::vector<cgroup::Membership> own_cgroups;
    if (plan.cgroup_ns) CRYO_TRY(enter_cgroup_ns_roots(img.tree, options.manage_cgroups, copy_cgroups, &own_cgroups, &made_cgroups));
    auto spawned = tree::spawn_stubs(plan);
    if (plan.cgroup_ns) CRYO_TRY(leave_cgroup_ns_roots(own_cgroups));
    if (!spawned.ok()) return std::move(spawned).error();
    root = *spawned;
  }
  plan.status_fd = status_read.get();
  CRYO_TRY(tree::wait_for_stubs(plan, root, 10000));
  CRYO_TRY(objects.lock_ptys());
  premaps.release();  // every stub holds its own copy now
  failpoint("restore.stubs");
  CRYO_TRY(check_interrupt("while the processes were being made"));
  // The root has made the tree's namespaces; the processes wait, empty.
  CRYO_TRY(options.actions.run(hooks::Action::kSetupNamespaces, root));
  CRYO_TRY(options.actions.run(hooks::Action::kPostSetupNamespaces, root));
  ActionRunner run_action = [&](hooks::Action action) { return options.actions.run(action, root); };

  // The rest works on the stubs from outside (ptrace, /proc, cgroup.procs,
  // kill), with the pids of the image: from inside the tree's pid
  // namespace when it has one of its own.
  auto bring_up = [&](const ActionRunner& action) -> Status {
    // Seize every living stub; a restorer that dies takes them down with it.
    for (const auto& t : plan.tasks) {
      if (!t.core) continue;
      CRYO_TRY(ptrace::seize_and_stop(t.entry->pid(), PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL |
                                                                  PTRACE_O_SUSPEND_SECCOMP));
      CRYO_TRY(ptrace::set_sigmask(t.entry->pid(), ~0ULL));
    }
    CRYO_TRY(join_cgroups(plan, img.tree, options, cgroup_roots, &made_cgroups));
    for (const auto& t : plan.tasks) {
      if (!t.core || !t.join_group_later) continue;
      pid_t pid = t.entry->pid();
      CRYO_ASSIGN(user_regs_struct regs, ptrace::get_regs(pid));
      ptrace::Remote r(pid, tramp.code, regs, ptrace::Stepping::kSingleStep);
      CRYO_TRY(r.call("setpgid", SYS_setpgid, {0, static_cast<uint64_t>(t.entry->pgid())}).wrap(pid_str(pid)));
    }
    // Each restored terminal's foreground group, now that every group exists.
    for (const auto& fg : objects.foreground_groups()) {
      CRYO_ASSIGN(user_regs_struct regs, ptrace::get_regs(fg.leader));
      ptrace::Remote r(fg.leader, tramp.code, regs, ptrace::Stepping::kSingleStep);
      CRYO_TRY(r.call("TIOCSPGRP", SYS_ioctl, {static_cast<uint64_t>(fg.fd), TIOCSPGRP, fg.pgrp_addr})
                   .wrap(pid_str(fg.leader) + ": foreground group " + std::to_string(fg.pgrp) + " of /dev/pts/" +
                         std::to_string(fg.index)));
    }
    // Zombies may die now (joining their groups first); wait until they have.
    go_write.reset();
    for (const auto& t : plan.tasks) {
      if (t.core) continue;
      for (int i = 0;; i++) {
        auto st = proc::read_stat(t.entry->pid());
        if (st.ok() && st->state == 'Z') break;
        if (i > 5000) return Error(ETIMEDOUT, pid_str(t.entry->pid()) + " did not become a zombie");
        ::usleep(1000);
      }
    }
    // Group stand-ins have done their part (the zombies too are in their
    // groups now): their stub parents reap them.
    for (const auto& [owner, group] : plan.group_stand_ins) {
      ::kill(group, SIGKILL);
      CRYO_ASSIGN(user_regs_struct regs, ptrace::get_regs(owner));
      ptrace::Remote r(owner, tramp.code, regs, ptrace::Stepping::kSingleStep);
      CRYO_TRY(r.call("wait4 for a group stand-in", SYS_wait4, {static_cast<uint64_t>(group), 0, __WALL, 0})
                   .wrap(pid_str(owner)));
    }

    progress::phase("writing memory");
    // Every process's mappings first, then all their pages at once (on
    // every core), then each one's protections and the rest.
    std::map<pid_t, mm::MappedMm> mapped;
    std::map<pid_t, std::vector<std::pair<uint64_t, uint64_t>>> lazy_ranges;
    for (const auto& t : plan.tasks) {
      if (!t.core) continue;
      pid_t pid = t.entry->pid();
      CRYO_ASSIGN(user_regs_struct regs, ptrace::get_regs(pid));
      ptrace::Remote r(pid, tramp.code, regs, ptrace::Stepping::kSingleStep);
      CRYO_TRY(check_interrupt("while memory was being restored"));
      auto m = mm::map_mm(pid, r, tramp, img.mms.at(pid), *t.core, objects, reader, premaps, t.entry->ppid(),
                          lazy ? &lazy_ranges[pid] : nullptr);
      if (!m.ok()) return std::move(m).error().wrap(pid_str(pid));
      mapped.emplace(pid, std::move(*m));
    }
    std::vector<const mm::PageWrites*> pages;
    for (const auto& [pid, m] : mapped) pages.push_back(&m.pages);
    CRYO_ASSIGN(result.page_writers, mm::write_pages(pages).wrap("writing memory"));
    for (const auto* p : pages) result.pages_bytes += p->bytes;
    for (const auto& t : plan.tasks) {
      if (!t.core) continue;
      pid_t pid = t.entry->pid();
      CRYO_ASSIGN(user_regs_struct regs, ptrace::get_regs(pid));
      ptrace::Remote r(pid, tramp.code, regs, ptrace::Stepping::kSingleStep);
      CRYO_TRY(mm::finish_mm(pid, r, tramp, img.mms.at(pid), *t.core, objects, mapped.at(pid)).wrap(pid_str(pid)));
      if (lazy) CRYO_TRY(lazy->hand_over(pid, r, lazy_ranges[pid]).wrap(pid_str(pid)));
      auto threads = task::create_threads(r, tramp, *t.core);
      if (!threads.ok()) return std::move(threads).error().wrap(pid_str(pid));
      failpoint("restore.memory");
    }
    for (const auto& t : plan.tasks)
      if (t.core) {
        // A detached root outlives cryo, its parent for now: its parent-death
        // signal would fire as cryo exits.
        bool detached_root = options.detach && &t == &plan.tasks.front() && !plan.cryo_init;
        if (detached_root && t.core->pdeath_signal())
          log::info(pid_str(t.entry->pid()) + ": its parent-death signal is not re-armed (its parent is gone)");
        task::StateOptions state{.fd_zone = zone, .keep_pdeath = !detached_root,
                                 .own_fd_table = !t.entry->files_of_parent()};
        CRYO_TRY(task::restore_state(t.entry->pid(), tramp, *t.core, img.files, state).wrap(pid_str(t.entry->pid())));
      }
    CRYO_TRY(restore_file_owners(img));
    failpoint("restore.state");
    CRYO_TRY(check_interrupt("before the processes were let go"));
    if (!options.actions.empty()) {
      CRYO_TRY(action(hooks::Action::kPostRestore));
      CRYO_TRY(action(hooks::Action::kPreResume));
    }
    for (const auto& t : plan.tasks)
      if (t.core) CRYO_TRY(task::finish(t.entry->pid(), tramp, *t.core).wrap(pid_str(t.entry->pid())));

    // Let everything go at once. A process let go is out of reach of
    // PTRACE_O_EXITKILL: should cryo die half way, the guard kills the ones
    // already running, so that a killed restore leaves all or nothing.
    // Its TCP connections leave repair mode only now; should cryo die, the
    // guard puts them back before they close, so that the peer hears nothing.
    Guard guard;
    std::vector<int> repaired = objects.repaired_sockets(img.files);
    size_t living = std::count_if(plan.tasks.begin(), plan.tasks.end(), [](const auto& t) { return t.core != nullptr; });
    if (living > 1 || !repaired.empty()) {
      CRYO_ASSIGN(guard, Guard::start("", "", repaired));
      for (const auto& t : plan.tasks)
        if (t.core) CRYO_TRY(guard.add_process(t.entry->pid()));
      CRYO_TRY(guard.finish_on_death());
    }
    failpoint("restore.release");
    CRYO_TRY(objects.leave_repair(img.files));
    for (const auto& t : plan.tasks) {
      if (!t.core) continue;
      for (const auto& th : t.core->threads()) CRYO_TRY(ptrace::detach(th.tid()));
      if (t.entry->state() == image::TaskEntry::STOPPED) ::kill(t.entry->pid(), stop_signal(t.entry->exit_status()));
      failpoint("restore.released");
    }
    guard.release();
    if (lazy) CRYO_TRY(lazy->done());
    // Under cryo's init the daemon's session stand-in is its child: it reaps it.
    if (plan.cryo_init && plan.session_stand_in) ::kill(plan.session_stand_in, SIGKILL);
    return {};
  };
  if (pid_ns) {
    life_read.reset();
    CRYO_TRY(bring_up_in_pid_ns(root, img.tree, bring_up, run_action, &made_cgroups, go_write));
  } else {
    CRYO_TRY(bring_up(run_action));
  }
  pid_t init = 0;  // cryo's init, under --new-pidns
  if (plan.cryo_init) {
    // The init stays once the restorer goes; the root is its child.
    if (::write(life_write.get(), "", 1) != 1) return errno_error("telling cryo's init the restore is done");
    life_write.reset();
    init = root;
    CRYO_ASSIGN(root, ns::child_with_inner_pid(init, plan.tasks[0].entry->pid()));
  }
  cleanup.cancel();
  objects.close_all();
  keep_lock_note.cancel();
  auto removed = segments.commit();
  if (removed.ok() && img.tree.has_ipc()) removed = ns::remove_ipc_segments(root, img.tree.ipc());
  if (!removed.ok()) log::error(removed.error().message());
  if (plan.session_stand_in && !plan.cryo_init) {
    // The stand-in goes; the root, its child, comes to us (a subreaper) and
    // keeps the session and group the stand-in made.
    ::kill(plan.session_stand_in, SIGKILL);
    while (::waitpid(plan.session_stand_in, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  result.phases = progress::phases();
  report.reset();
  result.root = root;
  result.total_us = now_us() - start;
  log::info("restored " + std::to_string(plan.tasks.size()) + " processes in " + std::to_string(result.total_us) + " us");
  CRYO_TRY(write_pidfile(options.pidfile, root));
  unlock();  // the connections are back: their packets may flow (before any wait below)
  if (!ns_lock.empty()) {
    auto st = net::unlock_connections(ns_lock, lock.method(), net_ns.get());
    if (!st.ok()) log::error(st.error().message());
  }
  if (!lock.table().empty() || !ns_lock.empty() || img.tree.has_net_ns())
    if (auto st = options.actions.run(hooks::Action::kNetworkUnlock, root); !st.ok()) log::error(st.error().message());
  // The tree runs: a script failing now cannot undo anything.
  if (auto st = options.actions.run(hooks::Action::kPostResume, root); !st.ok()) log::error(st.error().message());
  if (!options.detach) {
    int status;
    while (::waitpid(init ? init : root, &status, 0) < 0)  // cryo's init ends as the root does
      if (errno != EINTR) return errno_error("waiting for the restored tree");
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  return result;
}

Result<std::string> network_unlock(const std::string& images_dir) {
  CRYO_ASSIGN(auto reader, image::ImageDirReader::open(images_dir));
  CRYO_ASSIGN(LoadedImage img, load_image(reader));
  const auto& lock = img.files.network_lock();
  CRYO_TRY(net::unlock_connections(lock.table(), lock.method()));
  return lock.table();
}

}  // namespace cryo
