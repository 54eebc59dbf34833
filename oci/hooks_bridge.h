// OCI hook entries to the hooks library's commands.
#pragma once

#include <vector>

#include "hooks/lifecycle.h"
#include "oci/config.h"

namespace cryo::oci {

std::vector<hooks::HookCommand> to_hook_commands(const std::vector<Hook>& hooks);

}  // namespace cryo::oci
