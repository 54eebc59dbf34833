// The container lifecycle: what each runtime verb does to a container.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/cgroup/cgroup.h"
#include "core/sys/result.h"
#include "oci/config.h"
#include "oci/state.h"

namespace cryo::oci {

struct CreateOptions {
  std::string root, id, bundle, pid_file, console_socket;
  bool no_pivot = false, no_new_keyring = false;
  int preserve_fds = 0;
};

// Builds the container up to its exec.fifo wait; returns the init pid, a child of the caller.
Result<pid_t> create_container(const CreateOptions& options);
// Lets init exec the user process and runs poststart hooks.
Status start_container(const std::string& root, const std::string& id);
Status kill_container(const std::string& root, const std::string& id, int signal, bool all);
Status delete_container(const std::string& root, const std::string& id, bool force);
Status pause_container(const std::string& root, const std::string& id);
Status resume_container(const std::string& root, const std::string& id);
// Changes the limits of a live container (only the fields that are set; device rules are not changed).
Status update_container(const std::string& root, const std::string& id, const cgroup::Resources& resources);
Result<std::vector<pid_t>> container_pids(const std::string& root, const std::string& id);
Result<std::map<std::string, uint64_t>> container_stats(const std::string& root, const std::string& id);

// The state of a container being made (create, or restore) from its bundle's spec.
ContainerState new_container_state(const std::string& id, const std::string& bundle, const Spec& spec,
                                   const std::string& cgroup_path);
// The cgroup path of a container (cgroupsPath, /cryo-ID by default) and its group.
Result<std::string> container_cgroup_path(const Spec& spec, const std::string& id);
Result<cgroup::Group> container_group(const std::string& path);
// The spec's resources with the device rules every container gets (as runc's).
cgroup::Resources with_default_device_rules(const Spec& spec);
// Removes ROOT/ID and what create put in it.
void remove_container_dir(const std::string& dir);

// The spec kept in the state directory at create time.
Result<Spec> load_container_spec(const std::string& root, const std::string& id);
// Signal names ("KILL", "SIGKILL", "9") to numbers.
Result<int> parse_signal(const std::string& name);

}  // namespace cryo::oci
