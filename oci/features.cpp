#include <nlohmann/json.hpp>

#include "core/seccomp/seccomp.h"
#include "oci/caps.h"
#include "oci/info.h"

namespace cryo::oci {

std::string features_json() {
  using nlohmann::json;
  json features = {
      {"ociVersionMin", "1.0.0"},
      {"ociVersionMax", "1.2.0"},
      {"hooks", {"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"}},
      {"mountOptions",
       {"async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "mand", "noatime", "nodev",
        "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime", "nosuid", "private", "rbind", "relatime",
        "remount", "ro", "rprivate", "rshared", "rslave", "runbindable", "rw", "shared", "slave", "strictatime",
        "suid", "sync", "tmpcopyup", "unbindable"}},
      {"linux",
       {{"namespaces", {"cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"}},
        {"capabilities", all_capability_names()},
        {"cgroup", {{"v1", true}, {"v2", true}, {"systemd", false}, {"systemdUser", false}, {"rdma", false}}},
        {"seccomp",
         {{"enabled", true},
          {"actions", seccomp::known_actions()},
          {"operators", seccomp::known_operators()},
          {"archs", seccomp::known_architectures()},
          {"knownFlags", seccomp::known_flags()},
          {"supportedFlags", seccomp::known_flags()}}},
        {"apparmor", {{"enabled", false}}},
        {"selinux", {{"enabled", false}}},
        {"intelRdt", {{"enabled", false}}},
        {"mountExtensions", {{"idmap", {{"enabled", false}}}}}}},
      {"annotations", {{"org.opencontainers.runtime-spec.features", "cryo"}}}};
  return features.dump(4) + "\n";
}

}  // namespace cryo::oci
