#include "oci/init.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>

#include "core/ns/namespaces.h"
#include "core/sys/io.h"
#include "hooks/lifecycle.h"
#include "oci/console.h"
#include "oci/hooks_bridge.h"
#include "oci/process.h"
#include "oci/rootfs.h"
#include "oci/state.h"
#include "oci/sync.h"

namespace cryo::oci {
namespace {

// Namespaces are joined in this order: the user namespace first, so that we
// hold capabilities over the others; mount last, so paths still resolve.
const char* const kJoinOrder[] = {"user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount"};

Status join_namespaces(const Spec& spec) {
  for (const char* type : kJoinOrder) {
    const Namespace* ns = spec.find_namespace(type);
    if (ns && !ns->path.empty()) CRYO_TRY(ns::join(ns->path, ns::clone_flag(type)).wrap(std::string(type) + " namespace"));
  }
  return {};
}

Status write_sysctl(const std::string& key, const std::string& value) {
  std::string path = "/proc/sys/" + key;
  for (size_t i = 10; i < path.size(); i++)
    if (path[i] == '.') path[i] = '/';
  CRYO_ASSIGN(UniqueFd fd, open_file(path, O_WRONLY | O_CLOEXEC));
  return write_all(fd.get(), value).wrap("sysctl " + key + "=" + value);
}

Status join_session_keyring(const std::string& id) {
  std::string name = "_ses." + id;
  if (::syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, name.c_str()) < 0 && errno != ENOSYS)
    return errno_error("joining a new session keyring");
  return {};
}

// Runs inside the container's namespaces; returns only on error.
Status init_main(const InitArgs& a) {
  const Spec& spec = *a.spec;
  CRYO_TRY(wait_go(a.sync_fd).wrap("waiting for the runtime"));
  if (::setsid() < 0) return errno_error("setsid");
  bool in_user_ns = spec.has_namespace("user");
  RootfsContext ctx{&spec, a.cgroup_path, in_user_ns,
                    spec.has_namespace("cgroup") && spec.find_namespace("cgroup")->path.empty()};
  CRYO_TRY(prepare_rootfs(ctx));
  CRYO_TRY(send_message(a.sync_fd, "hooks"));
  CRYO_TRY(wait_go(a.sync_fd).wrap("waiting for createRuntime hooks"));
  CRYO_TRY(enter_rootfs(a.no_pivot));
  if (!spec.hostname.empty() && ::sethostname(spec.hostname.data(), spec.hostname.size()) < 0)
    return errno_error("sethostname " + spec.hostname);
  if (!spec.domainname.empty() && ::setdomainname(spec.domainname.data(), spec.domainname.size()) < 0)
    return errno_error("setdomainname " + spec.domainname);
  for (auto& [key, value] : spec.sysctl) CRYO_TRY(write_sysctl(key, value));
  CRYO_TRY(finish_rootfs(ctx));
  if (spec.process.terminal) {
    if (a.console_fd < 0) return Error(EINVAL, "process.terminal is set but no --console-socket was given");
    CRYO_TRY(setup_console(a.console_fd, spec.process.console_height, spec.process.console_width));
    ::close(a.console_fd);
  }
  CRYO_TRY(apply_rlimits(spec.process.rlimits));
  if (spec.process.oom_score_adj) CRYO_TRY(set_oom_score_adj(*spec.process.oom_score_adj));
  // Checked here so that a bad value fails create; exec_process sets them again (idempotent).
  if (spec.process.scheduler) CRYO_TRY(apply_scheduler(*spec.process.scheduler));
  if (spec.process.io_priority) CRYO_TRY(apply_io_priority(*spec.process.io_priority));
  if (!a.no_new_keyring) CRYO_TRY(join_session_keyring(a.id));
  // A missing program is a create error (as with runc), not a container that dies after start.
  if (::chdir(spec.process.cwd.c_str()) == 0) CRYO_TRY(find_executable(spec.process.args[0], spec.process.env));
  if (::chdir("/") < 0) return errno_error("chdir /");
  CRYO_TRY(send_message(a.sync_fd, "ready"));
  ::close(a.sync_fd);

  // Blocks until `start` opens the fifo for reading.
  std::string fifo = "/proc/self/fd/" + std::to_string(a.fifo_fd);
  CRYO_ASSIGN(UniqueFd fifo_w, open_file(fifo, O_WRONLY | O_CLOEXEC).wrap("opening exec.fifo (is /proc mounted?)"));
  CRYO_TRY(write_all(fifo_w.get(), "0"));
  fifo_w.reset();
  ::close(a.fifo_fd);

  if (!spec.hooks.start_container.empty()) {
    CRYO_ASSIGN(UniqueFd state_fd, open_at(a.state_dir_fd, "state.json", O_RDONLY | O_CLOEXEC));
    CRYO_ASSIGN(std::string text, read_fd(state_fd.get()));
    CRYO_ASSIGN(ContainerState state, state_from_json(text));
    state.status = ContainerStatus::kRunning;
    CRYO_TRY(hooks::run_hooks(to_hook_commands(spec.hooks.start_container), "startContainer", oci_state_json(state)));
  }
  ::close(a.state_dir_fd);
  ExecPlan plan{spec.process, spec.seccomp, in_user_ns, a.preserve_fds, spec.personality_domain};
  return exec_process(plan);
}

[[noreturn]] void fail_stage(int sync_fd, const Error& e) {
  send_error(sync_fd, e.message());
  _exit(1);
}

}  // namespace

void run_stage_a(const InitArgs& a) {
  const Spec& spec = *a.spec;
  if (!spec.process.exec_cpu_affinity_initial.empty())
    if (auto s = set_cpu_affinity(spec.process.exec_cpu_affinity_initial); !s.ok()) fail_stage(a.sync_fd, s.error());
  if (auto s = wait_go(a.sync_fd); !s.ok()) _exit(1);
  if (auto s = join_namespaces(spec); !s.ok()) fail_stage(a.sync_fd, s.error());
  // Entered while still host root: the new mount namespace keeps the working directory, and init
  // builds the rootfs from it, so a mapped root need not be allowed to search the bundle's parents.
  if (::chdir(spec.root_path.c_str()) < 0) fail_stage(a.sync_fd, errno_error("chdir to root.path " + spec.root_path));
  const Namespace* user = spec.find_namespace("user");
  if (user && user->path.empty()) {
    if (::unshare(CLONE_NEWUSER) < 0) fail_stage(a.sync_fd, errno_error("unshare user namespace"));
    if (auto s = send_message(a.sync_fd, "mapme"); !s.ok()) _exit(1);
    if (auto s = wait_go(a.sync_fd); !s.ok()) fail_stage(a.sync_fd, s.error());
  }
  if (user && (::setresgid(0, 0, 0) < 0 || ::setresuid(0, 0, 0) < 0))
    fail_stage(a.sync_fd, errno_error("becoming root in the user namespace (is uid/gid 0 mapped?)"));
  // Changing ids cleared "dumpable", which would leave /proc/self (and exec.fifo's reopen) to host root.
  if (user && ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0) fail_stage(a.sync_fd, errno_error("PR_SET_DUMPABLE"));
  int flags = 0;
  for (auto& n : spec.namespaces)
    if (n.path.empty() && n.type != "user" && n.type != "cgroup") flags |= ns::clone_flag(n.type);
  if (!spec.has_namespace("mount")) fail_stage(a.sync_fd, Error(EINVAL, "the config must have a mount namespace"));
  if (flags && ::unshare(flags) < 0) fail_stage(a.sync_fd, errno_error("unshare namespaces"));
  if (!spec.time_offsets.empty()) {
    // Only before the first process enters the new time namespace.
    std::string offsets;
    for (auto& [clock, value] : spec.time_offsets)
      offsets += clock + " " + std::to_string(value.first) + " " + std::to_string(value.second) + "\n";
    auto fd = open_file("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
    Status written = fd.ok() ? write_all(fd->get(), offsets) : Status(fd.error());
    if (!written.ok()) fail_stage(a.sync_fd, written.error().wrap("linux.timeOffsets"));
  }
  // The cgroup namespace comes after joining the cgroup, so its root is the container's group.
  const Namespace* cgroup_ns = spec.find_namespace("cgroup");
  if (cgroup_ns && cgroup_ns->path.empty() && ::unshare(CLONE_NEWCGROUP) < 0)
    fail_stage(a.sync_fd, errno_error("unshare cgroup namespace"));
  pid_t pid = ::fork();
  if (pid < 0) fail_stage(a.sync_fd, errno_error("fork init"));
  if (pid == 0) {
    Status s = init_main(a);
    // Before "ready" the runtime reads errors from the socket; after it only stderr is left.
    if (!send_message(a.sync_fd, "error:" + s.error().message()).ok())
      fprintf(stderr, "cryo init: %s\n", s.error().message().c_str());
    _exit(127);
  }
  (void)send_message(a.sync_fd, "pid:" + std::to_string(pid));
  _exit(0);
}

}  // namespace cryo::oci
