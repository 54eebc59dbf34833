// The restore half: a container's state directory, cgroup and console made
// before the engine restores its tree into them, and removed if it fails.
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "core/files/tty.h"
#include "core/sys/io.h"
#include "core/sys/log.h"
#include "oci/checkpoint/checkpoint.h"
#include "oci/checkpoint/record.h"
#include "oci/container.h"
#include "oci/hooks_bridge.h"
#include "oci/path.h"
#include "oci/rootfs.h"
#include "oci/runtime_log.h"
#include "oci/sync.h"

namespace cryo::oci {
namespace {

bool is_pipe(int fd) {
  struct stat st;
  return ::fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
}

// As runc before CRIU's restore: the mount points config.json needs that the
// rootfs lacks (a fresh snapshot of the image, without what create made in
// the old one) are made again, but for those under a tmpfs of the
// container, whose contents the image brings back.
Status make_mount_points(const Spec& spec) {
  std::vector<std::string> tmpfs;
  for (auto& m : spec.mounts)
    if (m.type == "tmpfs") tmpfs.push_back(m.destination);
  for (auto& m : spec.mounts) {
    bool under_tmpfs = false;
    for (auto& t : tmpfs) under_tmpfs |= m.destination.starts_with(t == "/" ? t : t + "/");
    if (under_tmpfs) continue;
    CRYO_ASSIGN(std::string target, secure_join(spec.root_path, m.destination));
    struct stat st;
    bool file = is_bind_mount(m) && ::stat(m.source.c_str(), &st) == 0 && !S_ISDIR(st.st_mode);
    CRYO_TRY(make_mount_point(target, file).wrap("the mount point of " + m.destination));
  }
  return {};
}

// A new pty for a terminal container's console: the master goes to the
// console socket, the slave is handed to the engine for the dumped console.
Result<UniqueFd> console_for(const ContainerRestoreOptions& o, const Spec& spec) {
  if (o.console_socket.empty())
    return Error(EINVAL, "the container was checkpointed with a terminal: restore needs --console-socket");
  CRYO_ASSIGN(files::PtyPair pty, files::open_pty_pair());
  if (spec.process.console_height || spec.process.console_width) {
    struct winsize ws = {};
    ws.ws_row = static_cast<unsigned short>(spec.process.console_height);
    ws.ws_col = static_cast<unsigned short>(spec.process.console_width);
    ::ioctl(pty.master.get(), TIOCSWINSZ, &ws);
  }
  CRYO_ASSIGN(UniqueFd socket, connect_unix(o.console_socket).wrap("--console-socket"));
  CRYO_TRY(send_fd(socket.get(), pty.master.get(), pty.slave_path).wrap("sending the pty master to the console socket"));
  return std::move(pty.slave);
}

}  // namespace

PendingRestore::PendingRestore(PendingRestore&& other) noexcept
    : options_(std::move(other.options_)),
      lock_(std::move(other.lock_)),
      group_(std::move(other.group_)),
      spec_(std::move(other.spec_)),
      state_(std::move(other.state_)),
      handed_(std::move(other.handed_)),
      engine_words_(std::move(other.engine_words_)),
      done_(other.done_) {
  other.done_ = true;  // what was made is ours to remove now
}

PendingRestore::~PendingRestore() { abort(); }

void PendingRestore::abort() {
  if (done_ || !lock_) return;
  done_ = true;
  if (group_) {
    (void)group_->signal_all(SIGKILL);
    auto destroyed = group_->destroy();
    if (!destroyed.ok()) log_warning("removing the cgroup of the failed restore: " + destroyed.error().message());
  }
  remove_container_dir(container_dir(options_.root, options_.id));
  lock_.reset();
}

Status PendingRestore::run_setup_hooks(pid_t pid) const {
  ContainerState state = state_;
  state.pid = pid;
  state.status = ContainerStatus::kCreating;
  std::string json = oci_state_json(state);
  log_debug("container " + state.id + ": running prestart/createRuntime hooks for the restored init " + std::to_string(pid));
  CRYO_TRY(hooks::run_hooks(to_hook_commands(spec_.hooks.prestart), "prestart", json));
  return hooks::run_hooks(to_hook_commands(spec_.hooks.create_runtime), "createRuntime", json);
}

Status PendingRestore::commit(pid_t pid) {
  state_.pid = pid;
  state_.start_time = process_start_time(pid);
  state_.status = ContainerStatus::kRunning;
  CRYO_TRY(save_state(options_.root, state_));
  if (!options_.pid_file.empty())
    CRYO_TRY(write_file_atomic(options_.pid_file, std::to_string(pid)).wrap("--pid-file"));
  done_ = true;
  lock_.reset();
  auto hooked = hooks::run_hooks(to_hook_commands(spec_.hooks.poststart), "poststart", oci_state_json(state_));
  if (!hooked.ok()) log_warning(hooked.error().message());
  return {};
}

Result<PendingRestore> prepare_restore(const ContainerRestoreOptions& o) {
  CRYO_TRY(validate_id(o.id));
  char bundle_buf[PATH_MAX];
  if (!::realpath(o.bundle.c_str(), bundle_buf)) return errno_error("bundle " + o.bundle);
  std::string bundle = bundle_buf;
  CRYO_ASSIGN(Spec spec, load_spec(bundle));
  if (!spec.has_process) return Error(EINVAL, "config.json has no process");
  CRYO_ASSIGN(CheckpointRecord record, read_record(o.image_dir));
  std::vector<std::string> words = {"-D", o.image_dir, "--root", spec.root_path};
  for (auto& key : record.mounts) {
    const Mount* found = nullptr;
    for (auto& m : spec.mounts)
      if (is_bind_mount(m) && m.destination == key) found = &m;
    if (!found)
      return Error(EINVAL, "the checkpoint has a bind mount at " + key + " that the bundle's config.json lacks");
    words.insert(words.end(), {"--external", "mnt[" + key + "]:" + found->source});
  }
  const Namespace* net = spec.find_namespace("network");
  if (net && !net->path.empty()) {
    words.insert(words.end(), {"--join-ns", "net:" + net->path});
  } else if (!record.network.empty()) {
    return Error(EINVAL, "the container's network namespace was joined by path at checkpoint: the bundle's "
                         "config.json must name one (linux.namespaces, type network, path)");
  }
  // A pipe that was init's stdio (a shim's or conmon's) comes back as the
  // pipe the caller gives us as the same fd, as runc hands it to CRIU.
  for (size_t fd = 0; fd < record.descriptors.size() && fd < 3; fd++) {
    const std::string& what = record.descriptors[fd];
    if (!what.starts_with("pipe:")) continue;
    if (!is_pipe(static_cast<int>(fd))) {
      log_warning("fd " + std::to_string(fd) + " of the container's init was " + what +
                  " and ours is no pipe: the container gets a pipe without a reader in its place");
      continue;
    }
    words.insert(words.end(), {"--inherit-fd", "fd[" + std::to_string(fd) + "]:" + what});
  }
  if (auto it = spec.annotations.find(kCriuConfigAnnotation); it != spec.annotations.end())
    words.insert(words.end(), {"--config", it->second});
  CRYO_ASSIGN(std::string cgroup_path, container_cgroup_path(spec, o.id));
  CRYO_ASSIGN(cgroup::Group group, container_group(cgroup_path));
  // The tree goes back into its cgroups, made here first with the bundle's
  // limits; a cgroupsPath other than the checkpoint's moves it there.
  if (!record.cgroup.empty() && record.cgroup != cgroup_path) words.insert(words.end(), {"--cgroup-root", cgroup_path});

  PendingRestore p;
  p.options_ = o;
  p.options_.bundle = bundle;
  CRYO_ASSIGN(ContainerLock lock, create_container_dir(o.root, o.id));
  p.lock_.emplace(std::move(lock));  // from here on, a failure removes what was made
  ContainerState& state = p.state_;
  state = new_container_state(o.id, bundle, spec, cgroup_path);
  std::string dir = container_dir(o.root, o.id);
  CRYO_TRY(save_state(o.root, state));
  CRYO_ASSIGN(std::string config_text, read_file(bundle + "/config.json"));
  CRYO_TRY(write_file_atomic(dir + "/config.json", config_text));
  p.group_.emplace(std::move(group));
  if (!o.engine_makes_cgroups) {
    CRYO_TRY(p.group_->create());
    CRYO_TRY(p.group_->apply(with_default_device_rules(spec)).wrap("linux.resources"));
  }
  CRYO_TRY(make_mount_points(spec));
  if (!record.console.empty()) {
    CRYO_ASSIGN(UniqueFd slave, console_for(o, spec));
    words.insert(words.end(), {"--inherit-fd", "fd[" + std::to_string(slave.get()) + "]:" + record.console});
    p.handed_.push_back(std::move(slave));
  }
  p.spec_ = std::move(spec);
  p.engine_words_ = std::move(words);
  return p;
}

}  // namespace cryo::oci
