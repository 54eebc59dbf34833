// The bundle's config.json as plain structs. Parsing is the only place that
// knows the JSON spelling; everything else in oci/ reads these fields.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/cgroup/cgroup.h"
#include "core/seccomp/seccomp.h"
#include "core/sys/result.h"

namespace cryo::oci {

struct Rlimit {
  std::string type;  // "RLIMIT_NOFILE"
  uint64_t soft = 0, hard = 0;
};

struct Capabilities {
  std::vector<std::string> bounding, effective, inheritable, permitted, ambient;
};

struct User {
  uid_t uid = 0;
  gid_t gid = 0;
  std::optional<mode_t> umask;
  std::vector<gid_t> additional_gids;
};

struct Scheduler {
  std::string policy;  // SCHED_OTHER ...
  int nice = 0;
  int priority = 0;
  std::vector<std::string> flags;
  uint64_t runtime = 0, deadline = 0, period = 0;
};

struct IoPriority {
  std::string io_class;  // IOPRIO_CLASS_RT, _BE, _IDLE
  int priority = 0;
};

struct Process {
  bool terminal = false;
  unsigned console_height = 0, console_width = 0;
  User user;
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::string cwd = "/";
  std::optional<Capabilities> capabilities;
  std::vector<Rlimit> rlimits;
  bool no_new_privileges = false;
  std::optional<int> oom_score_adj;
  std::optional<Scheduler> scheduler;
  std::optional<IoPriority> io_priority;
  std::string exec_cpu_affinity_initial, exec_cpu_affinity_final;  // cpu lists ("0-3,7")
};

struct Mount {
  std::string destination, type, source;
  std::vector<std::string> options;
};

struct Namespace {
  std::string type;  // pid network mount ipc uts user cgroup time
  std::string path;  // empty: create a new one
};

struct IdMapping {
  uint32_t container_id = 0, host_id = 0, size = 0;
};

struct Device {
  std::string path, type;  // type c, b, u or p
  int64_t major = 0, minor = 0;
  std::optional<mode_t> file_mode;
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
};

struct Hook {
  std::string path;
  std::vector<std::string> args, env;
  std::optional<int> timeout;  // seconds
};

struct Hooks {
  std::vector<Hook> prestart, create_runtime, create_container, start_container, poststart, poststop;
};

struct Spec {
  std::string oci_version;
  Process process;
  bool has_process = false;
  std::string root_path;  // absolute after load_spec
  bool root_readonly = false;
  std::string hostname, domainname;
  std::vector<Mount> mounts;
  Hooks hooks;
  std::map<std::string, std::string> annotations;
  // linux
  std::vector<Namespace> namespaces;
  std::vector<IdMapping> uid_mappings, gid_mappings;
  std::vector<Device> devices;
  std::string cgroups_path;
  cgroup::Resources resources;
  std::map<std::string, std::string> sysctl;
  std::optional<seccomp::Profile> seccomp;
  std::string rootfs_propagation;
  std::vector<std::string> masked_paths, readonly_paths;
  std::string personality_domain;
  // linux.timeOffsets: clock ("monotonic", "boottime") -> seconds, nanoseconds.
  std::map<std::string, std::pair<int64_t, uint32_t>> time_offsets;
  std::string mount_label;
  // What the config asks for that cryo ignores, for the runtime to log (deprecated fields).
  std::vector<std::string> warnings;

  bool has_namespace(const std::string& type) const;
  const Namespace* find_namespace(const std::string& type) const;
};

// Parses config.json text; bundle_dir makes root.path and relative bind sources
// absolute. Fields the runtime-spec defines and cryo cannot honour are errors that
// name the field; properties the spec does not define are ignored.
Result<Spec> parse_spec(const std::string& json_text, const std::string& bundle_dir);
Result<Spec> load_spec(const std::string& bundle_dir);
// Parses a linux.resources object alone (update --resources); ignored fields are
// added to warnings when it is given.
Result<cgroup::Resources> parse_resources(const std::string& json_text, std::vector<std::string>* warnings = nullptr);
// Parses a process.json (exec --process).
Result<Process> parse_process(const std::string& json_text);

}  // namespace cryo::oci
