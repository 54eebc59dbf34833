// What a container's checkpoint keeps beside the engine's image, for the
// restore: descriptors.json (runc's: what fds 0, 1 and 2 of init were) and
// container.json (the keys of what came from outside the container).
#pragma once

#include <string>
#include <vector>

#include "core/sys/result.h"

namespace cryo::oci {

// runc's key for a network namespace the container joined by path.
inline constexpr const char* kNetworkKey = "extRootNetNS";
// An annotation naming a CRIU configuration file, as runc reads it.
inline constexpr const char* kCriuConfigAnnotation = "org.criu.config";

struct CheckpointRecord {
  std::string id;
  std::vector<std::string> descriptors;  // fds 0, 1, 2 of init: "/dev/null", "pipe:[20175]", "/dev/pts/0"
  std::vector<std::string> mounts;       // destinations of the binds of config.json (their engine keys)
  std::string network;                   // kNetworkKey when the network namespace was joined by path
  std::string console;                   // tty[RDEV:DEV] of a terminal container's console
  std::string cgroup;                    // the container's cgroup path
};

Status write_record(const std::string& image_dir, const CheckpointRecord& record);
// Fails naming the directory when it holds no container checkpoint; a
// hostile file is refused with the field it lacks.
Result<CheckpointRecord> read_record(const std::string& image_dir);

}  // namespace cryo::oci
