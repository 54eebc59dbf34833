#include "oci/hooks_bridge.h"

namespace cryo::oci {

std::vector<hooks::HookCommand> to_hook_commands(const std::vector<Hook>& hooks) {
  std::vector<hooks::HookCommand> out;
  for (auto& h : hooks) out.push_back({h.path, h.args, h.env, h.timeout});
  return out;
}

}  // namespace cryo::oci
