#include "oci/container.h"
#include "oci/runtime_log.h"
#include "runtime/args.h"
#include "runtime/command.h"

namespace cryo::cli {

int cmd_delete(const GlobalOptions& g, const std::vector<std::string>& argv) {
  static const std::vector<OptionSpec> kSpecs = {{{"-f", "--force"}, false}};
  std::string error;
  auto args = parse(kSpecs, argv, &error, false);
  if (!args) return oci::report_error("delete: " + error);
  if (auto s = oci::setup_runtime_log(g.log, g.log_format, g.debug); !s.ok()) return oci::report_error(s.error().message());
  if (args->positional().empty()) return oci::report_error("delete: give a container id");
  int rc = 0;
  for (auto& id : args->positional())
    if (auto s = oci::delete_container(g.root, id, args->has("force")); !s.ok()) {
      // runc's delete --force of a container that is already gone succeeds.
      if (args->has("force") && s.error().code() == ENOENT) continue;
      rc = oci::report_error(s.error().message());
    }
  return rc;
}

}  // namespace cryo::cli
