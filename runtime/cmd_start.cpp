#include "oci/container.h"
#include "oci/runtime_log.h"
#include "runtime/args.h"
#include "runtime/command.h"

namespace cryo::cli {

int cmd_start(const GlobalOptions& g, const std::vector<std::string>& argv) {
  std::string error;
  auto args = parse({}, argv, &error, true);
  if (!args) return oci::report_error("start: " + error);
  if (auto s = oci::setup_runtime_log(g.log, g.log_format, g.debug); !s.ok()) return oci::report_error(s.error().message());
  if (args->positional().size() != 1) return oci::report_error("start: give exactly one container id");
  if (auto s = oci::start_container(g.root, args->positional()[0]); !s.ok()) return oci::report_error(s.error().message());
  return 0;
}

}  // namespace cryo::cli
