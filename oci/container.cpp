#include "oci/container.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdlib>
#include <thread>

#include "core/cgroup/cgroup.h"
#include "core/ns/namespaces.h"
#include "core/sys/io.h"
#include "core/sys/log.h"
#include "core/sys/scope_guard.h"
#include "oci/caps.h"
#include "oci/hooks_bridge.h"
#include "oci/init.h"
#include "oci/process.h"
#include "oci/runtime_log.h"
#include "oci/sync.h"

namespace cryo::oci {
namespace {

// What the config asks for that cryo ignores, as runc ignores it: logged, not refused.
void log_ignored(const Spec& spec) {
  for (auto& w : spec.warnings) log_warning(w);
  if (spec.process.capabilities) log_ignored_capabilities(*spec.process.capabilities);
}

Status validate_spec(const Spec& spec, const CreateOptions& o) {
  if (!spec.has_process) return Error(EINVAL, "config.json has no process");
  if (spec.process.args.empty()) return Error(EINVAL, "process.args must not be empty");
  for (auto& r : spec.process.rlimits)
    if (rlimit_number(r.type) < 0) return Error(EINVAL, "unknown rlimit type '" + r.type + "'");
  if (spec.seccomp) CRYO_TRY(seccomp::validate(*spec.seccomp));
  if (spec.process.terminal && o.console_socket.empty())
    return Error(EINVAL, "process.terminal is set: cryo needs --console-socket");
  struct stat st;
  // A network namespace joined by path may be the host's own: its net.* sysctls are the host's.
  const Namespace* net = spec.find_namespace("network");
  struct stat host_net, joined_net;
  if (net && !net->path.empty() && ::stat("/proc/self/ns/net", &host_net) == 0 && ::stat(net->path.c_str(), &joined_net) == 0 &&
      host_net.st_ino == joined_net.st_ino && host_net.st_dev == joined_net.st_dev)
    for (auto& [key, value] : spec.sysctl)
      if (key.starts_with("net.")) return Error(EINVAL, "sysctl " + key + " is not allowed in the host's network namespace");
  if (::stat(spec.root_path.c_str(), &st) < 0 || !S_ISDIR(st.st_mode))
    return Error(ENOENT, "root.path " + spec.root_path + " is not a directory");
  return {};
}

std::vector<ns::IdMap> id_maps(const std::vector<IdMapping>& in) {
  std::vector<ns::IdMap> out;
  for (auto& m : in) out.push_back({m.container_id, m.host_id, m.size});
  return out;
}

// Waits until pid is gone (exited, reaped or a zombie); false on timeout.
bool wait_gone(pid_t pid, uint64_t start_time, int timeout_ms) {
  for (int waited = 0; waited < timeout_ms; waited += 10) {
    if (process_start_time(pid) != start_time) return true;
    // Our own child (run, tests): reap it.
    ::waitpid(pid, nullptr, WNOHANG);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return process_start_time(pid) != start_time;
}

struct Creation {
  const CreateOptions& options;
  const Spec& spec;
  ContainerState& state;
};

// Talks to stage A and init until init waits on exec.fifo.
Status drive_init(Creation& c, int sync_fd, pid_t stage_a) {
  for (;;) {
    CRYO_ASSIGN(std::string m, receive_message(sync_fd));
    if (m.empty()) return Error(EPIPE, "the container's init exited before it was ready");
    if (m.starts_with("error:")) return Error(0, m.substr(6));
    if (m == "mapme") {
      CRYO_TRY(ns::write_id_maps(stage_a, id_maps(c.spec.uid_mappings), id_maps(c.spec.gid_mappings)));
      CRYO_TRY(send_message(sync_fd, "go"));
    } else if (m.starts_with("pid:")) {
      c.state.pid = std::atoi(m.c_str() + 4);
      log_debug("container " + c.state.id + ": init is pid " + std::to_string(c.state.pid));
      c.state.start_time = process_start_time(c.state.pid);
      CRYO_TRY(save_state(c.options.root, c.state));
      CRYO_TRY(send_message(sync_fd, "go"));
    } else if (m == "hooks") {
      log_debug("container " + c.state.id + ": running createRuntime/createContainer hooks");
      std::string json = oci_state_json(c.state);
      CRYO_TRY(hooks::run_hooks(to_hook_commands(c.spec.hooks.prestart), "prestart", json));
      CRYO_TRY(hooks::run_hooks(to_hook_commands(c.spec.hooks.create_runtime), "createRuntime", json));
      if (!c.spec.hooks.create_container.empty()) {
        CRYO_ASSIGN(UniqueFd mnt, open_file("/proc/" + std::to_string(c.state.pid) + "/ns/mnt", O_RDONLY | O_CLOEXEC));
        CRYO_TRY(hooks::run_hooks(to_hook_commands(c.spec.hooks.create_container), "createContainer", json,
                                  {mnt.get()}));
      }
      CRYO_TRY(send_message(sync_fd, "go"));
    } else if (m == "ready") {
      return {};
    } else {
      return Error(EPROTO, "unexpected message from init: " + m);
    }
  }
}

}  // namespace

ContainerState new_container_state(const std::string& id, const std::string& bundle, const Spec& spec,
                                   const std::string& cgroup_path) {
  ContainerState state;
  state.id = id;
  state.bundle = bundle;
  state.rootfs = spec.root_path;
  state.created = now_rfc3339();
  state.annotations = spec.annotations;
  state.cgroup_path = cgroup_path;
  for (auto& n : spec.namespaces)
    if (!n.path.empty()) state.namespace_paths[n.type] = n.path;
  return state;
}

Result<std::string> container_cgroup_path(const Spec& spec, const std::string& id) {
  if (spec.cgroups_path.empty()) return "/cryo-" + id;
  if (spec.cgroups_path.find(':') != std::string::npos)
    return Error(EINVAL, "cgroupsPath '" + spec.cgroups_path + "' is a systemd slice path; --systemd-cgroup is not supported by cryo");
  if (spec.cgroups_path.find("..") != std::string::npos) return Error(EINVAL, "cgroupsPath must not contain '..'");
  return spec.cgroups_path.starts_with("/") ? spec.cgroups_path : "/" + spec.cgroups_path;
}

Result<cgroup::Group> container_group(const std::string& path) {
  CRYO_ASSIGN(auto hierarchies, cgroup::host_hierarchies());
  return cgroup::Group(std::move(hierarchies), path);
}

// The device rules the container always gets after the spec's own (as runc does):
// mknod of anything, the default /dev nodes, the pty devices and the spec's devices.
cgroup::Resources with_default_device_rules(const Spec& spec) {
  cgroup::Resources r = spec.resources;
  if (r.devices.empty()) return r;
  r.devices.push_back({true, 'c', -1, -1, "m"});
  r.devices.push_back({true, 'b', -1, -1, "m"});
  for (auto [major, minor] : {std::pair{1, 3}, {1, 5}, {1, 7}, {1, 8}, {1, 9}, {5, 0}, {5, 1}, {5, 2}, {136, -1}})
    r.devices.push_back({true, 'c', major, minor, "rwm"});
  for (auto& d : spec.devices)
    if (d.type == "c" || d.type == "b" || d.type == "u")
      r.devices.push_back({true, d.type == "b" ? 'b' : 'c', d.major, d.minor, "rwm"});
  return r;
}

void remove_container_dir(const std::string& dir) {
  for (const char* f : {"state.json", "config.json", "exec.fifo"}) ::unlink((dir + "/" + f).c_str());
  ::rmdir(dir.c_str());
}

Result<Spec> load_container_spec(const std::string& root, const std::string& id) {
  CRYO_ASSIGN(std::string text, read_file(container_dir(root, id) + "/config.json"));
  CRYO_ASSIGN(ContainerState state, load_state(root, id));
  return parse_spec(text, state.bundle);
}

Result<pid_t> create_container(const CreateOptions& o) {
  char bundle_buf[PATH_MAX];
  if (!::realpath(o.bundle.c_str(), bundle_buf)) return errno_error("bundle " + o.bundle);
  std::string bundle = bundle_buf;
  CRYO_ASSIGN(Spec spec, load_spec(bundle));
  CRYO_TRY(validate_spec(spec, o));
  log_ignored(spec);
  CRYO_ASSIGN(std::string cgroup_path, container_cgroup_path(spec, o.id));
  CRYO_ASSIGN(cgroup::Group group, container_group(cgroup_path));
  CRYO_ASSIGN(ContainerLock lock, create_container_dir(o.root, o.id));
  std::string dir = container_dir(o.root, o.id);
  ContainerState state = new_container_state(o.id, bundle, spec, cgroup_path);
  ScopeGuard cleanup([&] {
    if (state.pid > 0) ::kill(state.pid, SIGKILL);
    (void)group.signal_all(SIGKILL);
    if (state.pid > 0) ::waitpid(state.pid, nullptr, 0);
    (void)group.destroy();
    remove_container_dir(dir);
  });
  CRYO_TRY(save_state(o.root, state));
  CRYO_ASSIGN(std::string config_text, read_file(bundle + "/config.json"));
  CRYO_TRY(write_file_atomic(dir + "/config.json", config_text));
  log_debug("container " + o.id + ": cgroup " + cgroup_path + ", bundle " + bundle);
  CRYO_TRY(group.create());
  CRYO_TRY(group.apply(with_default_device_rules(spec)).wrap("linux.resources"));
  std::string fifo = dir + "/exec.fifo";
  if (::mkfifo(fifo.c_str(), 0622) < 0) return errno_error("mkfifo " + fifo);
  // Past the umask: a container root mapped to another uid must still open it for writing.
  if (::chmod(fifo.c_str(), 0622) < 0) return errno_error("chmod " + fifo);
  CRYO_ASSIGN(UniqueFd fifo_fd, open_file(fifo, O_PATH | O_CLOEXEC));
  CRYO_ASSIGN(UniqueFd state_dir_fd, open_file(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  UniqueFd console;
  if (!o.console_socket.empty()) {
    CRYO_ASSIGN(console, connect_unix(o.console_socket).wrap("--console-socket"));
  }
  CRYO_ASSIGN(auto pair, sync_pair());
  // Init is forked by stage A; as subreaper we become its parent when stage A exits.
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) return errno_error("PR_SET_CHILD_SUBREAPER");
  InitArgs args{&spec, o.id, pair.second.get(), console.get(), fifo_fd.get(), state_dir_fd.get(),
                o.no_pivot, o.no_new_keyring, o.preserve_fds, cgroup_path};
  pid_t stage_a = ::fork();
  if (stage_a < 0) return errno_error("fork");
  if (stage_a == 0) {
    pair.first.reset();
    // The lock is the parent's: init must not keep the directory locked while it waits for start.
    ::close(lock.fd());
    run_stage_a(args);
  }
  pair.second.reset();
  console.reset();
  Status driven = group.add_process(stage_a);
  if (driven.ok()) driven = send_message(pair.first.get(), "go");
  Creation creation{o, spec, state};
  if (driven.ok()) driven = drive_init(creation, pair.first.get(), stage_a);
  if (!driven.ok() && state.pid > 0) ::kill(state.pid, SIGKILL);  // before it can see EOF and complain
  pair.first.reset();  // a stage A still waiting for "go" sees EOF and exits
  int status = 0;
  while (::waitpid(stage_a, &status, 0) < 0 && errno == EINTR) {
  }
  if (!driven.ok()) return std::move(driven).error().wrap("creating container " + o.id);
  state.status = ContainerStatus::kCreated;
  CRYO_TRY(save_state(o.root, state));
  if (!o.pid_file.empty()) CRYO_TRY(write_file_atomic(o.pid_file, std::to_string(state.pid)).wrap("--pid-file"));
  cleanup.cancel();
  return state.pid;
}

Status start_container(const std::string& root, const std::string& id) {
  CRYO_ASSIGN(ContainerLock lock, lock_container(root, id));
  CRYO_ASSIGN(ContainerState state, load_state(root, id));
  if (state.status != ContainerStatus::kCreated)
    return Error(EINVAL, "cannot start container " + id + " in state " + status_name(state.status));
  std::string fifo = container_dir(root, id) + "/exec.fifo";
  CRYO_ASSIGN(UniqueFd fd, open_file(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  for (;;) {
    struct pollfd p = {fd.get(), POLLIN, 0};
    int n = ::poll(&p, 1, 100);
    if (n > 0 && (p.revents & POLLIN)) break;
    if (n < 0 && errno != EINTR) return errno_error("poll exec.fifo");
    if (process_start_time(state.pid) != state.start_time) return Error(ESRCH, "container " + id + " init exited before start");
  }
  char byte;
  if (::read(fd.get(), &byte, 1) != 1) return Error(EIO, "container " + id + ": init did not signal on exec.fifo");
  ::unlink(fifo.c_str());
  state.status = ContainerStatus::kRunning;
  CRYO_ASSIGN(Spec spec, load_container_spec(root, id));
  auto hooked = hooks::run_hooks(to_hook_commands(spec.hooks.poststart), "poststart", oci_state_json(state));
  if (!hooked.ok()) log::warn(hooked.error().message());
  return {};
}

Status kill_container(const std::string& root, const std::string& id, int signal, bool all) {
  CRYO_ASSIGN(ContainerState state, load_state(root, id));
  if (state.status == ContainerStatus::kStopped && !all) return Error(ESRCH, "container " + id + ": container not running");
  if (all) {
    CRYO_ASSIGN(cgroup::Group group, container_group(state.cgroup_path));
    return group.signal_all(signal);
  }
  if (::kill(state.pid, signal) < 0) return errno_error("kill container " + id + " init " + std::to_string(state.pid));
  return {};
}

Status delete_container(const std::string& root, const std::string& id, bool force) {
  CRYO_ASSIGN(ContainerLock lock, lock_container(root, id));
  std::string dir = container_dir(root, id);
  auto loaded = load_state(root, id);
  if (!loaded.ok()) {
    remove_container_dir(dir);
    return {};
  }
  ContainerState state = *loaded;
  bool alive = state.status != ContainerStatus::kStopped;
  if (alive && !force && state.status != ContainerStatus::kCreated)
    return Error(EBUSY, "cannot delete container " + id + " that is not stopped: " + status_name(state.status) +
                            " (use --force)");
  CRYO_ASSIGN(cgroup::Group group, container_group(state.cgroup_path));
  if (alive) {
    (void)group.signal_all(SIGKILL);
    if (state.pid > 0) ::kill(state.pid, SIGKILL);
    if (state.paused) (void)group.thaw();
    if (state.pid > 0 && !wait_gone(state.pid, state.start_time, 10000))
      return Error(EBUSY, "container " + id + ": init did not die");
  }
  auto spec = load_container_spec(root, id);
  if (spec.ok()) {
    state.status = ContainerStatus::kStopped;
    auto hooked = hooks::run_hooks(to_hook_commands(spec->hooks.poststop), "poststop", oci_state_json(state));
    if (!hooked.ok()) log::warn(hooked.error().message());
  }
  (void)group.signal_all(SIGKILL);
  CRYO_TRY(group.destroy().wrap("removing cgroup of container " + id));
  remove_container_dir(dir);
  return {};
}

Status pause_container(const std::string& root, const std::string& id) {
  CRYO_ASSIGN(ContainerLock lock, lock_container(root, id));
  CRYO_ASSIGN(ContainerState state, load_state(root, id));
  if (state.status != ContainerStatus::kRunning && state.status != ContainerStatus::kCreated)
    return Error(EINVAL, "cannot pause container " + id + " in state " + status_name(state.status));
  CRYO_ASSIGN(cgroup::Group group, container_group(state.cgroup_path));
  CRYO_TRY(group.freeze());
  state.paused = true;
  return save_state(root, state);
}

Status resume_container(const std::string& root, const std::string& id) {
  CRYO_ASSIGN(ContainerLock lock, lock_container(root, id));
  CRYO_ASSIGN(ContainerState state, load_state(root, id));
  if (state.status != ContainerStatus::kPaused) return Error(EINVAL, "container " + id + " is not paused");
  CRYO_ASSIGN(cgroup::Group group, container_group(state.cgroup_path));
  CRYO_TRY(group.thaw());
  state.paused = false;
  return save_state(root, state);
}

Status update_container(const std::string& root, const std::string& id, const cgroup::Resources& resources) {
  CRYO_ASSIGN(ContainerLock lock, lock_container(root, id));
  CRYO_ASSIGN(ContainerState state, load_state(root, id));
  if (state.status == ContainerStatus::kStopped) return Error(EINVAL, "container " + id + " is stopped");
  if (!resources.devices.empty()) return Error(EINVAL, "update cannot change device rules");
  CRYO_ASSIGN(cgroup::Group group, container_group(state.cgroup_path));
  return group.apply(resources).wrap("updating container " + id);
}

Result<std::vector<pid_t>> container_pids(const std::string& root, const std::string& id) {
  CRYO_ASSIGN(ContainerState state, load_state(root, id));
  CRYO_ASSIGN(cgroup::Group group, container_group(state.cgroup_path));
  return group.processes();
}

Result<std::map<std::string, uint64_t>> container_stats(const std::string& root, const std::string& id) {
  CRYO_ASSIGN(ContainerState state, load_state(root, id));
  CRYO_ASSIGN(cgroup::Group group, container_group(state.cgroup_path));
  return group.stats();
}

}  // namespace cryo::oci
