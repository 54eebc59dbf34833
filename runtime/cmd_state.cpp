#include <cstdio>

#include "oci/runtime_log.h"
#include "oci/state.h"
#include "runtime/args.h"
#include "runtime/command.h"

namespace cryo::cli {

int cmd_state(const GlobalOptions& g, const std::vector<std::string>& argv) {
  std::string error;
  auto args = parse({}, argv, &error, true);
  if (!args) return oci::report_error("state: " + error);
  if (auto s = oci::setup_runtime_log(g.log, g.log_format, g.debug); !s.ok()) return oci::report_error(s.error().message());
  if (args->positional().size() != 1) return oci::report_error("state: give exactly one container id");
  auto state = oci::load_state(g.root, args->positional()[0]);
  if (!state.ok()) return oci::report_error(state.error().message());
  printf("%s\n", oci::oci_state_json(*state).c_str());
  return 0;
}

}  // namespace cryo::cli
