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
// Names in any set that this cryo or this kernel does not know (runc warns and
// ignores them: a config written for a newer kernel still runs).
std::vector<std::string> unknown_capabilities(const Capabilities& caps);
// Ambient capabilities that are not both permitted and inheritable: the kernel
// refuses to raise them, and they are skipped (as runc does; its default spec has some).
std::vector<std::string> unraisable_ambient_capabilities(const Capabilities& caps);

// Logs what the two functions above find: unknown names as a warning (as runc
// does), unraisable ambient ones at debug level (runc 1.1 skips them silently).
void log_ignored_capabilities(const Capabilities& caps);

// Drops the bounding set, switches to the user (uid, gid, groups) keeping the
// listed capabilities, then sets effective/permitted/inheritable and ambient.
Status apply_user_and_capabilities(const User& user, const std::optional<Capabilities>& caps, bool in_user_ns);

}  // namespace cryo::oci
