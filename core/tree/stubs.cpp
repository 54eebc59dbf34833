#include "core/tree/stubs.h"
#include "core/ns/ipc_ns.h"
#include "core/ns/mount_ns.h"
#include "core/ns/time_ns.h"
#include "core/ns/user_ns.h"
#include "core/sys/kernel_abi.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <map>

namespace cryo::tree {
namespace {

struct Report {
  int32_t pid;
  int32_t err;  // 0: ready
  char message[248];
};
static_assert(sizeof(Report) <= PIPE_BUF);

void report(const StubPlan& plan, pid_t pid, int err, const std::string& message) {
  Report r{};
  r.pid = pid;
  r.err = err;
  std::strncpy(r.message, message.c_str(), sizeof r.message - 1);
  (void)!::write(plan.status_fd, &r, sizeof r);
}

long clone_with_pid(pid_t pid, uint64_t flags = 0) {
  abi::CloneArgs args{};
  args.flags = flags;
  args.exit_signal = SIGCHLD;
  args.set_tid = reinterpret_cast<uint64_t>(&pid);
  args.set_tid_size = 1;
  return ::syscall(SYS_clone3, &args, sizeof args);
}

// The init of a new pid namespace: pid 1 there, whatever pid outside.
long clone_new_pid_ns() {
  abi::CloneArgs args{};
  args.flags = CLONE_NEWPID;
  args.exit_signal = SIGCHLD;
  return ::syscall(SYS_clone3, &args, sizeof args);
}

// A task of a pid namespace nested in the tree's: its pid at each level,
// its own namespace's first, as clone3 wants them; the init of such a
// namespace makes it.
long clone_nested(const image::TaskEntry& e, bool init, uint64_t flags) {
  std::array<pid_t, abi::kMaxPidNsLevels + 1> ids{};
  size_t levels = 0;
  for (int k = e.ns_pids_size() - 1; k >= 0; k--) ids[levels++] = e.ns_pids(k);
  ids[levels++] = e.pid();
  abi::CloneArgs args{};
  args.flags = flags | (init ? CLONE_NEWPID : 0);
  args.exit_signal = SIGCHLD;
  args.set_tid = reinterpret_cast<uint64_t>(ids.data());
  args.set_tid_size = levels;
  return ::syscall(SYS_clone3, &args, sizeof args);
}

[[noreturn]] void stub_main(const StubPlan& plan, size_t index, pid_t parent, int files_ready_fd = -1);

[[noreturn]] void init_main(const StubPlan& plan);

// The init of the tree's pid namespace when the tree has a user namespace
// of its own, which must own it: a pid namespace is owned by the user
// namespace of the process that clones it, and only a process with
// CAP_CHECKPOINT_RESTORE in that owner may give pids in it (clone3's
// set_tid). A launcher joins the user namespace and clones the init there
// (CLONE_PARENT: the init is the restorer's child, as it would be), says
// its pid, and exits. The init is the tree's root (cryo_init: cryo's own,
// which forks the root).
long clone_init_in_user_ns(const StubPlan& plan) {
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) < 0) return -1;
  long launcher = ::fork();
  if (launcher < 0) {
    int saved = errno;
    ::close(ends[0]);
    ::close(ends[1]);
    errno = saved;
    return -1;
  }
  if (launcher == 0) {
    ::close(ends[0]);
    int result[2] = {-1, EINVAL};
    const auto* root = plan.tasks[0].core;
    auto entered = ns::enter_user_ns(*plan.user_ns, root ? root->creds() : image::Creds(), plan.user_ns_fd);
    if (entered.ok()) {
      abi::CloneArgs args{};
      args.flags = CLONE_NEWPID | CLONE_PARENT;
      long got = ::syscall(SYS_clone3, &args, sizeof args);
      if (got == 0 && plan.cryo_init) init_main(plan);
      if (got == 0) stub_main(plan, 0, 0);
      result[0] = static_cast<int>(got);
      result[1] = got < 0 ? errno : 0;
    } else if (entered.error().code()) {
      result[1] = entered.error().code();
    }
    (void)!::write(ends[1], result, sizeof result);
    ::_exit(0);
  }
  ::close(ends[1]);
  int result[2] = {-1, EIO};
  (void)!::read(ends[0], result, sizeof result);
  ::close(ends[0]);
  while (::waitpid(static_cast<pid_t>(launcher), nullptr, 0) < 0 && errno == EINTR) {
  }
  if (result[0] < 0) errno = result[1];
  return result[0];
}

// Forks the stub of plan.tasks[index] from its parent's (nullptr: the
// root's, from cryo); in the child, never returns. A child sharing its
// parent's fd table writes a byte to files_ready_fd once it is done with
// the table (see stub_main).
long fork_stub(const StubPlan& plan, size_t index, const image::TaskEntry* parent = nullptr, int files_ready_fd = -1) {
  pid_t self = ::getpid();
  const image::TaskEntry& e = *plan.tasks[index].entry;
  bool init = index == 0 && plan.own_pid_ns;
  bool nested_init = parent && e.ns_pids_size() > parent->ns_pids_size();
  uint64_t sharing = parent ? (e.files_of_parent() ? CLONE_FILES : 0) | (e.fs_of_parent() ? CLONE_FS : 0) : 0;
  long pid = init ? (plan.user_ns ? clone_init_in_user_ns(plan) : clone_new_pid_ns())
           : e.ns_pids_size() ? clone_nested(e, nested_init, sharing) : clone_with_pid(e.pid(), sharing);
  if (pid == 0) stub_main(plan, index, init || nested_init ? 0 : self, files_ready_fd);  // an init's parent is outside: pid 0
  return pid;
}

[[noreturn]] void stub_main(const StubPlan& plan, size_t index, pid_t parent, int files_ready_fd) {
  const StubTask& t = plan.tasks[index];
  pid_t pid = t.entry->pid();
  // Until the restore completes, the stub dies with its parent.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(1);
  ::close(plan.go_write_fd);
  // Every action as a fresh process has it: SIG_DFL, no flags, empty mask
  // (glibc's signal() would leave SA_RESTORER and SA_RESTART behind).
  abi::KernelSigaction dfl{};
  for (int sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP) ::syscall(SYS_rt_sigaction, sig, &dfl, nullptr, 8);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  auto fail = [&](const std::string& what) {
    report(plan, pid, errno ? errno : EINVAL, what);
    ::_exit(1);
  };

  // First: every namespace the root makes is the user namespace's (an init
  // of a pid namespace, the root's or cryo's, was cloned in it already).
  if (index == 0 && plan.user_ns && !plan.own_pid_ns && !plan.cryo_init) {
    auto entered = ns::enter_user_ns(*plan.user_ns, t.core ? t.core->creds() : image::Creds(), plan.user_ns_fd);
    if (!entered.ok()) {
      errno = entered.error().code();
      fail(entered.error().context());
    }
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // new credentials cleared it
    if (::getppid() != parent) ::_exit(1);
  }
  if (index == 0 && plan.net_ns_fd >= 0 && ::setns(plan.net_ns_fd, CLONE_NEWNET) < 0)
    fail("joining the tree's network namespace");
  if (index == 0 && plan.uts) {
    const auto& uts = *plan.uts;
    if (::unshare(CLONE_NEWUTS) < 0) fail("unshare(CLONE_NEWUTS)");
    if (::sethostname(uts.hostname().data(), uts.hostname().size()) < 0) fail("sethostname " + uts.hostname());
    if (::setdomainname(uts.domainname().data(), uts.domainname().size()) < 0)
      fail("setdomainname " + uts.domainname());
  }
  if (index == 0 && plan.ipc) {  // before the mounts: an mqueue mount shows the new namespace
    auto made = ns::make_ipc_ns(*plan.ipc, *plan.images);
    if (!made.ok()) {
      errno = made.error().code();
      fail("its ipc namespace: " + made.error().context());
    }
  }
  if (index == 0 && plan.cgroup_ns && ::unshare(CLONE_NEWCGROUP) < 0) fail("unshare(CLONE_NEWCGROUP)");
  if (index == 0 && plan.time_ns) {
    auto made = ns::make_time_ns(*plan.time_ns);
    if (!made.ok()) {
      errno = made.error().code();
      fail(made.error().context());
    }
  }
  if (index == 0 && plan.mount_ns) {
    auto joined = ns::finish_in_root_task(*plan.mount_ns, plan.mount_ns_fd, plan.user_ns != nullptr);
    if (!joined.ok()) {
      errno = joined.error().code();
      fail(joined.error().context());
    }
  }
  if (t.entry->sid() == pid) {
    if (::setsid() < 0) fail("setsid");
    // Before any child is forked: children inherit the controlling terminal.
    auto ctty = t.core ? plan.objects->take_controlling_tty(pid) : Status();
    if (!ctty.ok()) {
      errno = ctty.error().code();
      fail(ctty.error().context());
    }
  } else if (t.entry->pgid() == pid) {
    if (::setpgid(0, 0) < 0) fail("setpgid");
  }
  for (pid_t group : t.group_stand_ins) {
    long got = clone_with_pid(group);
    if (got == 0) {  // a stand-in: leads the group until the members joined it
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::prctl(PR_SET_NAME, "cryo-group");
      if (::setpgid(0, 0) < 0) ::_exit(1);
      for (;;) ::pause();
    }
    if (got < 0) fail(errno == EEXIST ? "pid " + std::to_string(group) + " (a process group) is in use" : "clone3 of a group stand-in");
    // The group exists once this returns, whether or not the stand-in has
    // run yet: a zombie joins it as soon as it is let go.
    if (::setpgid(static_cast<pid_t>(got), static_cast<pid_t>(got)) < 0) fail("setpgid of a group stand-in");
  }
  if (t.core) {
    auto made = plan.objects->make_stub_groups(pid, *plan.files);
    if (made.ok()) made = plan.objects->make_listeners_and_connections(pid, *plan.files);
    if (!made.ok()) {
      errno = made.error().code();
      fail(made.error().context());
    }
  }
  if (t.core && plan.premaps && !plan.premaps->empty()) {
    auto built = plan.premaps->build(pid, t.entry->ppid(), plan.mms->at(pid), *plan.images);
    if (!built.ok()) {
      errno = built.error().code();
      fail("building shared memory: " + built.error().context());
    }
  }
  if (plan.ipc) {
    auto took = ns::take_semaphore_pids(*plan.ipc, pid);
    if (!took.ok()) {
      errno = took.error().code();
      fail(took.error().context());
    }
  }
  // Children sharing our fd table (CLONE_FILES) make their objects in it
  // too: our fds are installed once they all say they are done.
  int files_ready[2] = {-1, -1};
  size_t sharing_files = 0;
  for (size_t child : t.children) sharing_files += plan.tasks[child].entry->files_of_parent();
  if (sharing_files && ::pipe2(files_ready, O_CLOEXEC) < 0) fail("pipe for the children sharing its fd table");
  pid_t for_children = 0;  // the child whose pid namespace becomes ours for children
  for (size_t child : t.children) {
    long got = fork_stub(plan, child, t.entry, files_ready[1]);
    pid_t want = plan.tasks[child].entry->pid();
    if (got < 0)
      fail(errno == EEXIST ? "pid " + std::to_string(want) + " is in use by another process"
                           : "clone3 of pid " + std::to_string(want));
    if (want == t.entry->children_pid_ns()) for_children = static_cast<pid_t>(got);
  }
  if (for_children) {  // it had unshared CLONE_NEWPID and forked that child
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, for_children, 0));
    if (pidfd < 0 || ::setns(pidfd, CLONE_NEWPID) < 0) fail("joining the pid namespace of its child for its children");
    ::close(pidfd);
  }
  if (t.core) {
    auto accepted = plan.objects->accept_connections(pid, *plan.files);
    if (!accepted.ok()) {
      errno = accepted.error().code();
      fail(accepted.error().context());
    }
  }
  if (!t.core) {  // a zombie: exits when told, as the recorded status says
    ::prctl(PR_SET_NAME, t.entry->comm().c_str());
    report(plan, pid, 0, "");
    char c;
    while (::read(plan.go_read_fd, &c, 1) != 0) {
    }
    if (t.join_group_later) ::setpgid(0, t.entry->pgid());
    int status = t.entry->exit_status();
    if (WIFSIGNALED(status)) {
      ::signal(WTERMSIG(status), SIG_DFL);
      ::kill(::getpid(), WTERMSIG(status));  // its pid here: in a nested namespace, not the image's
    }
    ::_exit(WEXITSTATUS(status));
  }
  const image::Process& core = *t.core;
  if (t.entry->fs_of_parent()) {
    // cwd, root and umask are the parent's, which sets them
  } else if (core.has_cwd_file_id()) {  // a removed directory, made again for the restore
    if (::fchdir(plan.objects->fd_of(core.cwd_file_id())) < 0) fail("fchdir to the removed " + core.cwd());
  } else if (::chdir(core.cwd().c_str()) < 0) {
    fail("chdir " + core.cwd());
  }
  if (!t.entry->fs_of_parent()) {
    if (core.root() != "/" && ::chroot(core.root().c_str()) < 0) fail("chroot " + core.root());
    ::umask(core.umask() & 0777);
  }
  for (char c; sharing_files > 0; sharing_files--)
    if (::read(files_ready[0], &c, 1) != 1) fail("waiting for the children sharing its fd table");
  if (files_ready[0] >= 0) {
    ::close(files_ready[0]);
    ::close(files_ready[1]);
  }
  if (t.entry->files_of_parent()) {  // the table is the parent's, which installs the fds
    if (::write(files_ready_fd, "", 1) != 1) fail("telling its parent it is done with their fd table");
  } else {
    auto st = files::FileObjects::install_fds(core, *plan.objects, plan.fd_zone);
    if (st.ok()) st = plan.objects->watch_epoll_targets(pid, *plan.files);
    if (!st.ok()) {
      errno = st.error().code();
      fail(st.error().context());
    }
  }
  report(plan, pid, 0, "");
  for (;;) {  // the restorer seizes us here
    char c;
    if (::read(plan.go_read_fd, &c, 1) == 0) ::pause();
  }
}

}  // namespace

Result<StubPlan> plan_stubs(const image::Tree& tree, const std::vector<const image::Process*>& cores,
                            bool shell_job) {
  StubPlan plan;
  std::map<pid_t, size_t> index;
  for (int i = 0; i < tree.tasks_size(); i++) {
    const auto& e = tree.tasks(i);
    StubTask t;
    t.entry = &e;
    t.core = cores[static_cast<size_t>(i)];
    index[e.pid()] = static_cast<size_t>(i);
    if (e.ns_pids_size() >= abi::kMaxPidNsLevels) return Error(EINVAL, "pid " + std::to_string(e.pid()) + " nests too deep");
    for (int32_t id : e.ns_pids())
      if (id <= 0) return Error(EINVAL, "pid " + std::to_string(e.pid()) + " has a bad pid in a nested namespace");
    if (i == 0 && e.ns_pids_size() > 0) return Error(EINVAL, "the root is in a nested pid namespace");
    if (i > 0) {
      auto parent = index.find(e.ppid());
      if (parent == index.end()) return Error(EINVAL, "pid " + std::to_string(e.pid()) + " comes before its parent");
      // In its parent's pid namespace, or the init of one just below it.
      int depth = e.ns_pids_size(), above = tree.tasks(static_cast<int>(parent->second)).ns_pids_size();
      if (depth != above && (depth != above + 1 || e.ns_pids(depth - 1) != 1))
        return Error(EINVAL, "pid " + std::to_string(e.pid()) + " is in a pid namespace its parent cannot make");
      plan.tasks[parent->second].children.push_back(static_cast<size_t>(i));
    }
    bool shares = e.files_of_parent() || e.fs_of_parent();
    if (shares && (i == 0 || !t.core || !plan.tasks[index[e.ppid()]].core))
      return Error(EINVAL, "pid " + std::to_string(e.pid()) + " shares an fd table or cwd with a parent that has none");
    plan.tasks.push_back(t);
  }
  // The group each stub is in right after its fork, and who must join one later.
  std::vector<pid_t> group(plan.tasks.size());
  for (size_t i = 0; i < plan.tasks.size(); i++) {
    const auto& e = *plan.tasks[i].entry;
    pid_t inherited = i == 0 ? ::getpgrp() : group[index[e.ppid()]];
    if (i == 0 && !index.count(e.sid()) && e.sid() != e.pid() && !shell_job) {
      plan.session_stand_in = e.sid();
      inherited = e.sid();
    }
    group[i] = (e.sid() == e.pid() || e.pgid() == e.pid()) ? e.pid() : inherited;
    bool dead_group = i > 0 && !shell_job && !index.count(e.pgid()) && e.pgid() != plan.session_stand_in;
    if (dead_group && group[i] != e.pgid()) {
      bool known = false;
      for (const auto& [owner, g] : plan.group_stand_ins) known = known || g == e.pgid();
      if (!known) {
        if (plan.tasks[index[e.ppid()]].entry->ns_pids_size() > 0)
          return Error(EINVAL, "pid " + std::to_string(e.pid()) + ": a group whose leader is gone, in a nested pid namespace");
        plan.group_stand_ins.emplace_back(e.ppid(), e.pgid());
        plan.tasks[index[e.ppid()]].group_stand_ins.push_back(e.pgid());
      }
    }
    plan.tasks[i].join_group_later = (index.count(e.pgid()) || dead_group) && group[i] != e.pgid();
  }
  return plan;
}

namespace {

Result<pid_t> spawn_tree(const StubPlan& plan);

// cryo's init of a fresh pid namespace: forks the tree, reaps whatever is
// orphaned to it, and ends as the tree's root does (its exit code, or 128 +
// its signal). Until the restore is done it also ends should the restorer
// die (EOF on the life pipe): the whole namespace goes with it.
[[noreturn]] void init_main(const StubPlan& plan) {
  ::prctl(PR_SET_NAME, "cryo-init");
  ::close(plan.init_life_write_fd);
  auto root = spawn_tree(plan);
  if (!root.ok()) {
    report(plan, plan.tasks[0].entry->pid(), root.error().code() ? root.error().code() : EINVAL, root.error().context());
    ::_exit(1);
  }
  // The root has its copies of the restorer's fds: the init keeps none but
  // its life pipe, or a pipe of the tree would never see its last writer go.
  ::syscall(SYS_close_range, 0, plan.init_life_fd - 1, 0);
  ::syscall(SYS_close_range, plan.init_life_fd + 1, ~0U, 0);
  bool watching = true;
  for (;;) {
    if (watching) {
      struct pollfd pfd = {plan.init_life_fd, POLLIN, 0};
      if (::poll(&pfd, 1, 50) > 0) {
        char c;
        if (::read(plan.init_life_fd, &c, 1) != 1) ::_exit(1);  // the restorer died
        watching = false;
        ::close(plan.init_life_fd);
      }
    }
    int status;
    pid_t got = ::waitpid(-1, &status, watching ? WNOHANG : 0);
    if (got == *root) ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    if (got < 0 && errno == ECHILD) ::_exit(1);
  }
}

}  // namespace

Result<pid_t> spawn_stubs(const StubPlan& plan) {
  if (!plan.cryo_init) return spawn_tree(plan);
  long init = plan.user_ns ? clone_init_in_user_ns(plan) : clone_new_pid_ns();
  if (init < 0) return errno_error("clone3 of an init in a new pid namespace");
  if (init == 0) init_main(plan);
  return static_cast<pid_t>(init);
}

namespace {

Result<pid_t> spawn_tree(const StubPlan& plan) {
  if (plan.session_stand_in) {
    pid_t restorer = ::getpid();
    long got = clone_with_pid(plan.session_stand_in);
    if (got < 0)
      return errno == EEXIST ? Error(EEXIST, "pid " + std::to_string(plan.session_stand_in) +
                                                 " (the daemon's session) is in use by another process")
                             : errno_error("clone3 of the session stand-in");
    if (got == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != restorer || ::setsid() < 0) ::_exit(1);
      ::prctl(PR_SET_NAME, "cryo-session");
      if (fork_stub(plan, 0) < 0) {
        report(plan, plan.tasks[0].entry->pid(), errno ? errno : EINVAL,
               errno == EEXIST ? "pid " + std::to_string(plan.tasks[0].entry->pid()) + " is in use by another process"
                               : "clone3 of the root");
        ::_exit(1);
      }
      for (;;) ::pause();
    }
    return plan.tasks[0].entry->pid();
  }
  long pid = fork_stub(plan, 0);
  if (pid < 0) {
    pid_t want = plan.tasks[0].entry->pid();
    if (errno == EEXIST) return Error(EEXIST, "pid " + std::to_string(want) + " is in use by another process");
    return errno_error("clone3 of pid " + std::to_string(want));
  }
  return static_cast<pid_t>(pid);
}

}  // namespace

Status wait_for_stubs(const StubPlan& plan, pid_t root, int timeout_ms) {
  size_t ready = 0;
  int waited_ms = 0;
  while (ready < plan.tasks.size()) {
    struct pollfd pfd = {plan.status_fd, POLLIN, 0};
    int n = ::poll(&pfd, 1, 100);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {
      int status;
      if (::waitpid(root, &status, WNOHANG | __WALL) == root)
        return Error(ECHILD, "the restored tree died while it was being created");
      if ((waited_ms += 100) >= timeout_ms) return Error(ETIMEDOUT, "the process tree did not come up in time");
      continue;
    }
    if (n < 0) return errno_error("poll");
    Report r;
    ssize_t got = ::read(plan.status_fd, &r, sizeof r);
    if (got != sizeof r) return errno_error("reading stub reports");
    if (r.err != 0) {
      r.message[sizeof r.message - 1] = '\0';
      return Error(r.err, "pid " + std::to_string(r.pid) + ": " + r.message);
    }
    ready++;
  }
  return {};
}

}  // namespace cryo::tree
