#include "oci/container.h"
#include "oci/exec.h"
#include "oci/pty_proxy.h"
#include "oci/runtime_log.h"
#include "runtime/args.h"
#include "runtime/command.h"

namespace cryo::cli {

extern const std::vector<OptionSpec> kCreateSpecs;
int create_or_run_options(const GlobalOptions& g, const Args& args, const char* verb, oci::CreateOptions* out);

int cmd_run(const GlobalOptions& g, const std::vector<std::string>& argv) {
  std::string error;
  auto args = parse(kCreateSpecs, argv, &error, true);
  if (!args) return oci::report_error("run: " + error);
  if (auto s = oci::setup_runtime_log(g.log, g.log_format, g.debug); !s.ok()) return oci::report_error(s.error().message());
  oci::CreateOptions options;
  if (int rc = create_or_run_options(g, *args, "run", &options)) return rc;
  // An interactive terminal without a console socket: we hold the pty ourselves.
  std::optional<oci::ConsoleListener> listener;
  if (options.console_socket.empty() && !args->has("detach")) {
    auto spec = oci::load_spec(options.bundle);
    if (spec.ok() && spec->process.terminal) {
      auto opened = oci::ConsoleListener::open();
      if (!opened.ok()) return oci::report_error(opened.error().message());
      listener.emplace(std::move(*opened));
      options.console_socket = listener->path();
    }
  }
  auto pid = oci::create_container(options);
  if (!pid.ok()) return oci::report_error(pid.error().message());
  if (auto s = oci::start_container(options.root, options.id); !s.ok()) {
    (void)oci::delete_container(options.root, options.id, true);
    return oci::report_error(s.error().message());
  }
  if (args->has("detach")) return 0;
  int code = 0;
  if (listener) {
    auto master = listener->receive_master();
    if (!master.ok()) return oci::report_error(master.error().message());
    code = oci::proxy_and_wait(*pid, master->get());
  } else {
    code = oci::forward_and_wait(*pid);
  }
  if (!args->has("keep")) {
    if (auto s = oci::delete_container(options.root, options.id, true); !s.ok()) oci::report_error(s.error().message());
  }
  return code;
}

}  // namespace cryo::cli
