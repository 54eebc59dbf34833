// network.status of a checkpoint, in the shape Podman writes it (a map of
// network name to its interfaces, each with its MAC and its subnets:
// {"cryo": {"interfaces": {"eth0": {"mac_address": "...", "subnets":
// [{"ipnet": "10.0.0.2/24", "gateway": "10.0.0.1"}]}}}}).
//
// In runtime mode cryo sets up no network: whoever made the container's
// network namespace (CNI, a script, Podman) did. So cryo records what that
// namespace held when it was checkpointed, under the network name "cryo":
// its interfaces but loopback, their global addresses and the gateway of
// their default route. Whoever sets up the network on the restoring host
// reads the address to move there from it (the migration recipe does).
#pragma once

#include <sys/types.h>

#include <string>

#include "core/sys/result.h"

namespace cryo::oci {

constexpr const char* kNetworkStatusFile = "network.status";

// The network.status text of the network namespace pid is in.
Result<std::string> network_status_of(pid_t pid);

}  // namespace cryo::oci
