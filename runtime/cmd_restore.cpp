#include <cstdio>

#include "core/restore.h"
#include "core/sys/interrupt.h"
#include "core/sys/log.h"
#include "runtime/command.h"
#include "runtime/process_options.h"

namespace cryo::cli {

int cmd_restore(const GlobalOptions&, const std::vector<std::string>& argv) {
  std::vector<OptionSpec> specs = {
      {{"-D", "--images-dir"}, true},     {{"-d", "--restore-detached"}, false}, {{"-j", "--shell-job"}, false},
      {{"--pidfile"}, true},              {{"--tcp-established"}, false},        {{"--manage-cgroups"}, true},
  };
  for (auto& s : logging_options()) specs.push_back(s);
  std::string error;
  // CRIU's --manage-cgroups takes its mode only as --manage-cgroups=MODE.
  std::vector<std::string> words = argv;
  for (auto& w : words)
    if (w == "--manage-cgroups") w = "--manage-cgroups=soft";
  auto args = parse(specs, words, &error);
  if (!args) return fail("restore: " + error);
  RestoreOptions options;
  options.images_dir = args->get_or("images-dir", ".");
  options.detach = args->has("restore-detached");
  options.shell_job = args->has("shell-job");
  options.tcp_established = args->has("tcp-established");
  options.pidfile = args->get_or("pidfile", "");
  auto manage = cgroup::parse_manage(args->get_or("manage-cgroups", "soft"));
  if (!manage.ok()) return fail("restore: " + manage.error().message());
  options.manage_cgroups = *manage;
  if (auto e = setup_logging(*args, options.images_dir); !e.empty()) return fail("restore: " + e);
  catch_interrupts();  // Ctrl-C stops the restore at its next step; what it made is killed
  auto result = restore(options);
  if (!result.ok()) return fail("restore failed: " + result.error().message());
  if (options.detach) return 0;
  return result->exit_code;
}

}  // namespace cryo::cli
