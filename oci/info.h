// What the runtime prints without a container: `spec` and `features`.
#pragma once

#include <string>

namespace cryo::oci {

// runc's default config.json (a busybox-friendly `sh` with a terminal); rootless
// adds a user namespace mapping the caller's ids.
std::string default_spec_json(bool rootless);
// The `features` document (runtime-spec features.md).
std::string features_json();

}  // namespace cryo::oci
