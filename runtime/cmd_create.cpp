#include <cstdio>

#include "oci/container.h"
#include "oci/runtime_log.h"
#include "runtime/args.h"
#include "runtime/command.h"

namespace cryo::cli {

// Shared by create and run: the options runc's create takes.
extern const std::vector<OptionSpec> kCreateSpecs;
const std::vector<OptionSpec> kCreateSpecs = {
    {{"-b", "--bundle"}, true},  {{"--pid-file"}, true},      {{"--console-socket"}, true},
    {{"--no-pivot"}, false},     {{"--no-new-keyring"}, false}, {{"--preserve-fds"}, true},
    {{"-d", "--detach"}, false}, {{"--keep"}, false},         {{"--no-subreaper"}, false}};

int create_or_run_options(const GlobalOptions& g, const Args& args, const char* verb, oci::CreateOptions* out) {
  if (g.systemd_cgroup) return oci::report_error("--systemd-cgroup is not supported by cryo; use cgroupfs paths");
  if (args.positional().size() != 1) return oci::report_error(std::string(verb) + ": give exactly one container id");
  out->root = g.root;
  out->id = args.positional()[0];
  out->bundle = args.get_or("bundle", ".");
  out->pid_file = args.get_or("pid-file", "");
  out->console_socket = args.get_or("console-socket", "");
  out->no_pivot = args.has("no-pivot");
  out->no_new_keyring = args.has("no-new-keyring");
  std::string preserve = args.get_or("preserve-fds", "0");
  if (preserve.empty() || preserve.find_first_not_of("0123456789") != std::string::npos || preserve.size() > 6)
    return oci::report_error("--preserve-fds must be a number, not '" + preserve + "'");
  out->preserve_fds = std::stoi(preserve);
  return 0;
}

int cmd_create(const GlobalOptions& g, const std::vector<std::string>& argv) {
  std::string error;
  auto args = parse(kCreateSpecs, argv, &error, true);
  if (!args) return oci::report_error("create: " + error);
  if (auto s = oci::setup_runtime_log(g.log, g.log_format, g.debug); !s.ok()) return oci::report_error(s.error().message());
  oci::CreateOptions options;
  if (int rc = create_or_run_options(g, *args, "create", &options)) return rc;
  auto pid = oci::create_container(options);
  if (!pid.ok()) return oci::report_error(pid.error().message());
  return 0;
}

}  // namespace cryo::cli
