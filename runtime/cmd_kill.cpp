#include <signal.h>

#include "oci/container.h"
#include "oci/runtime_log.h"
#include "runtime/args.h"
#include "runtime/command.h"

namespace cryo::cli {

int cmd_kill(const GlobalOptions& g, const std::vector<std::string>& argv) {
  static const std::vector<OptionSpec> kSpecs = {{{"-a", "--all"}, false}};
  std::string error;
  auto args = parse(kSpecs, argv, &error, false);
  if (!args) return oci::report_error("kill: " + error);
  if (auto s = oci::setup_runtime_log(g.log, g.log_format, g.debug); !s.ok()) return oci::report_error(s.error().message());
  const auto& pos = args->positional();
  if (pos.empty() || pos.size() > 2) return oci::report_error("kill: usage: cryo kill [--all] ID [SIGNAL]");
  int signal = SIGTERM;
  if (pos.size() == 2) {
    auto parsed = oci::parse_signal(pos[1]);
    if (!parsed.ok()) return oci::report_error("kill: " + parsed.error().message());
    signal = *parsed;
  }
  if (auto s = oci::kill_container(g.root, pos[0], signal, args->has("all")); !s.ok())
    return oci::report_error(s.error().message());
  return 0;
}

}  // namespace cryo::cli
