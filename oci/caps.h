// Linux capabilities by OCI name, and applying the five sets of a process.
#pragma once

#include <string>
#include <vector>

#include "core/sys/result.h"
#include "oci/config.h"

namespace cryo::oci {

// CAP_SYS_ADMIN -> 21; -1 when unknown.
int capability_number(const std::string& name);
std::vector<std::string> all_capability_names();
Status validate_capabilities(const Capabilities& caps);

// Drops the bounding set, switches to the user (uid, gid, groups) keeping the
// listed capabilities, then sets effective/permitted/inheritable and ambient.
Status apply_user_and_capabilities(const User& user, const std::optional<Capabilities>& caps, bool in_user_ns);

}  // namespace cryo::oci
