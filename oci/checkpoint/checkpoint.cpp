// The checkpoint half: what the engine is told about a container, and what
// is kept beside its image for the restore.
#include "oci/checkpoint/checkpoint.h"

#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/files/tty.h"
#include "core/sys/io.h"
#include "oci/checkpoint/record.h"
#include "oci/container.h"
#include "oci/runtime_log.h"

namespace cryo::oci {
namespace {

// What fds 0, 1 and 2 of init are, as runc's descriptors.json says them;
// "" for one that is closed or cannot be read.
std::vector<std::string> init_descriptors(pid_t pid) {
  std::vector<std::string> out;
  for (int fd = 0; fd < 3; fd++) {
    std::string link = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
    char target[4096];
    ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
    out.push_back(n > 0 ? std::string(target, static_cast<size_t>(n)) : "");
  }
  return out;
}

Status check_namespaces(const Spec& spec, const std::string& id) {
  for (auto& n : spec.namespaces)
    if (!n.path.empty() && n.type != "network")
      return Error(ENOTSUP, "container " + id + " joined the " + n.type + " namespace at " + n.path +
                                ": cryo can checkpoint a container that joins only a network namespace by path");
  return {};
}

Status make_dirs(const std::string& path) {
  for (size_t end = path.find('/', 1);; end = path.find('/', end + 1)) {
    std::string prefix = path.substr(0, end);
    if (!prefix.empty() && ::mkdir(prefix.c_str(), 0700) < 0 && errno != EEXIST) return errno_error("mkdir " + prefix);
    if (end == std::string::npos) return {};
  }
}

}  // namespace

bool is_bind_mount(const Mount& m) {
  if (m.type == "bind") return true;
  for (auto& o : m.options)
    if (o == "bind" || o == "rbind") return true;
  return false;
}

Result<ContainerCheckpoint> prepare_checkpoint(const std::string& root, const std::string& id,
                                               const std::string& image_dir, bool pre_dump) {
  ContainerCheckpoint c;
  c.root = root;
  CRYO_ASSIGN(c.lock, lock_container(root, id));
  CRYO_ASSIGN(c.state, load_state(root, id));
  if (c.state.status != ContainerStatus::kRunning && c.state.status != ContainerStatus::kPaused)
    return Error(EINVAL, std::string("Container cannot be checkpointed in ") + status_name(c.state.status) + " state");
  CRYO_ASSIGN(c.spec, load_container_spec(root, id));
  CRYO_TRY(check_namespaces(c.spec, id));
  CRYO_TRY(make_dirs(image_dir).wrap("--image-path"));
  pid_t pid = c.state.pid;

  CheckpointRecord record;
  record.id = id;
  record.descriptors = init_descriptors(pid);
  record.cgroup = c.state.cgroup_path;
  c.engine_words = {"-t", std::to_string(pid), "-D", image_dir};
  CRYO_ASSIGN(cgroup::Group group, container_group(c.state.cgroup_path));
  // The freezer holds every task while the engine seizes them; a paused
  // container's stays frozen (the engine puts it back as it found it).
  auto freezer = group.dir_for("freezer");
  if (!freezer) freezer = group.dir_for("");
  if (freezer) c.engine_words.insert(c.engine_words.end(), {"--freeze-cgroup", *freezer});
  for (auto& m : c.spec.mounts) {
    if (!is_bind_mount(m)) continue;
    record.mounts.push_back(m.destination);
    c.engine_words.push_back("--external");
    c.engine_words.push_back("mnt[" + m.destination + "]:" + m.destination);
  }
  if (const Namespace* net = c.spec.find_namespace("network")) {
    if (!net->path.empty()) {
      struct stat st;
      std::string own = "/proc/" + std::to_string(pid) + "/ns/net";
      if (::stat(own.c_str(), &st) < 0) return errno_error("stat " + own);
      record.network = kNetworkKey;
      c.engine_words.push_back("--external");
      c.engine_words.push_back("net[" + std::to_string(st.st_ino) + "]:" + kNetworkKey);
    } else {
      // As runc: the runtime does not manage network devices, their
      // configuration is the caller's business (CRIU's empty network namespace).
      c.engine_words.insert(c.engine_words.end(), {"--empty-ns", "net"});
    }
  }
  if (c.spec.process.terminal) {
    record.console = files::stdio_terminal_key(pid);
    if (!record.console.empty()) c.engine_words.insert(c.engine_words.end(), {"--external", record.console});
  }
  if (auto it = c.spec.annotations.find(kCriuConfigAnnotation); it != c.spec.annotations.end())
    c.engine_words.insert(c.engine_words.end(), {"--config", it->second});
  if (!pre_dump) CRYO_TRY(write_record(image_dir, record));
  return c;
}

Status finish_checkpoint(ContainerCheckpoint checkpoint, bool leave_running) {
  if (leave_running) return {};
  {
    ContainerLock released = std::move(checkpoint.lock);  // delete takes the lock itself
  }
  return delete_container(checkpoint.root, checkpoint.state.id, /*force=*/true);
}

}  // namespace cryo::oci
