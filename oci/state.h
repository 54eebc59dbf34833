// The container state machine and its state directory: ROOT/ID/ holds
// state.json (this struct), config.json (the spec as created) and, between
// create and start, exec.fifo. A flock on the directory serialises commands.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::oci {

enum class ContainerStatus { kCreating, kCreated, kRunning, kPaused, kStopped };

const char* status_name(ContainerStatus s);

struct ContainerState {
  std::string id;
  pid_t pid = 0;
  uint64_t start_time = 0;  // of pid, from /proc/PID/stat, to tell a reused pid
  std::string bundle, rootfs, created, owner;
  std::map<std::string, std::string> annotations;
  std::string cgroup_path;
  bool paused = false;
  ContainerStatus status = ContainerStatus::kCreating;  // as last computed
  std::map<std::string, std::string> namespace_paths;  // type -> path joined at create
};

std::string container_dir(const std::string& root, const std::string& id);
Status validate_id(const std::string& id);

// JSON for state.json and the OCI `state` output.
std::string state_to_json(const ContainerState& s);
std::string oci_state_json(const ContainerState& s);
Result<ContainerState> state_from_json(const std::string& text);

// Holds the directory lock for as long as it lives.
class ContainerLock {
 public:
  ContainerLock() = default;
  explicit ContainerLock(UniqueFd fd) : fd_(std::move(fd)) {}
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
};

// Makes ROOT/ID (failing if it exists) and locks it.
Result<ContainerLock> create_container_dir(const std::string& root, const std::string& id);
// Locks an existing container's directory; fails with "does not exist" otherwise.
Result<ContainerLock> lock_container(const std::string& root, const std::string& id);

Status save_state(const std::string& root, const ContainerState& s);
// Loads and computes the live status (a dead init is "stopped").
Result<ContainerState> load_state(const std::string& root, const std::string& id);
Result<std::vector<std::string>> list_ids(const std::string& root);

// The start time of pid (field 22 of /proc/PID/stat), 0 when it is gone or a zombie.
uint64_t process_start_time(pid_t pid);
// Computes the status of a loaded state from the processes and the fifo.
Status compute_status(const std::string& root, ContainerState& s);
std::string now_rfc3339();

}  // namespace cryo::oci
