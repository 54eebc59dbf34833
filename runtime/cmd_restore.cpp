#include <unistd.h>

#include <cstdio>

#include "core/ns/net/net_config.h"
#include "core/restore.h"
#include "core/sys/interrupt.h"
#include "core/sys/io.h"
#include "core/sys/log.h"
#include "core/sys/progress.h"
#include "runtime/command.h"
#include "runtime/criu_options.h"
#include "runtime/process_options.h"

namespace cryo::cli {
int restore_options(const Args* args, RestoreOptions& options) {
  options.images_dir = args->get_or("images-dir", ".");
  options.detach = args->has("restore-detached") || args->has("daemon");
  options.shell_job = args->has("shell-job");
  options.tcp_established = args->has("tcp-established");
  options.tcp_close = args->has("tcp-close");
  options.new_pidns = args->has("new-pidns");
  if (args->has("lazy-pages")) options.lazy_pages_socket = in_work_dir(*args, "lazy-pages.socket");
  options.root = args->get_or("root", "");
  for (const auto& script : args->all("action-script")) options.actions.add_script(script);
  options.actions.set_image_dir(options.images_dir);
  if (auto pidfile = args->get("pidfile")) options.pidfile = in_work_dir(*args, *pidfile);
  for (const auto& external : args->all("external")) {
    if (external.starts_with("veth[")) {  // veth[INNER]:OUTER[@BRIDGE]
      auto peer = ns::net::parse_external_veth(external);
      if (!peer.ok()) return fail("restore: " + peer.error().message());
      options.net_ns.veths[peer->first] = peer->second;
      continue;
    }
    if (!external.starts_with("mnt[")) continue;  // mnt[KEY]:PATH binds PATH at the mount dumped as KEY
    size_t close = external.find("]:");
    if (external == "mnt[]") continue;
    if (close == std::string::npos) return fail("restore: --external " + external + ": want mnt[KEY]:PATH");
    // mnt[] (CRIU's "every external mount by itself") is what cryo does anyway.
    if (close > 4) options.external_mounts[external.substr(4, close - 4)] = external.substr(close + 2);
  }
  for (const auto& arg : args->all("veth-pair")) {  // INNER=OUTER[@BRIDGE], CRIU's older spelling
    size_t eq = arg.find('=');
    auto peer = ns::net::parse_external_veth("veth[" + arg.substr(0, eq) + "]:" + (eq == std::string::npos ? "" : arg.substr(eq + 1)));
    if (!peer.ok()) return fail("restore: --veth-pair " + arg + ": want INNER=OUTER or INNER=OUTER@BRIDGE");
    options.net_ns.veths[peer->first] = peer->second;
  }
  options.net_ns.empty = args->has("empty-ns");
  options.net_ns.weak_sysctls = args->has("weak-sysctls");
  for (const auto& arg : args->all("join-ns")) {
    if (!arg.starts_with("net:") || arg.size() == 4)
      return fail("restore: --join-ns " + arg + ": cryo joins only a network namespace (net:PID or net:PATH)");
    options.net_ns.join = arg.substr(4, arg.find(',') == std::string::npos ? std::string::npos : arg.find(',') - 4);
  }
  for (const auto& arg : args->all("inherit-fd")) {
    auto inherit = files::parse_inherit_fd(arg);
    if (!inherit.ok()) return fail("restore: " + inherit.error().message());
    if (inherit->debug) {  // a marker for the caller's stream, written at once as CRIU does
      if (::write(inherit->fd, inherit->key.data(), inherit->key.size()) != static_cast<ssize_t>(inherit->key.size()))
        return fail("restore: --inherit-fd " + arg + ": cannot write to fd " + std::to_string(inherit->fd));
      continue;
    }
    options.inherit_fds.push_back(*inherit);
  }
  auto manage = cgroup::parse_manage(args->get_or("manage-cgroups", ""));
  if (!manage.ok()) return fail("restore: " + manage.error().message());
  options.manage_cgroups = *manage;
  for (const auto& arg : args->all("cgroup-root")) {
    auto root = cgroup::parse_cgroup_root(arg);
    if (!root.ok()) return fail("restore: " + root.error().message());
    options.cgroup_roots.push_back(*root);
  }
  if (auto e = setup_logging(*args); !e.empty()) return fail("restore: " + e);
  return 0;
}

void write_restore_stats(const std::string& dir, const RestoreResult& result) {
  char stats[160];
  snprintf(stats, sizeof stats, "{\"total_us\":%lu,\"pages_bytes\":%lu,\"page_writers\":%u,\"phases\":",
           static_cast<unsigned long>(result.total_us), static_cast<unsigned long>(result.pages_bytes),
           result.page_writers);
  auto st = write_file_atomic(dir + "/stats-restore.json", stats + progress::to_json(result.phases) + "}\n");
  if (!st.ok()) log::info("stats-restore.json: " + st.error().message());
}

int cmd_restore(const GlobalOptions& global, const std::vector<std::string>& argv) {
  // runc's `restore [flags] ID`: a container id makes it the runtime's verb.
  if (is_container_restore(argv)) return cmd_restore_container(global, argv);
  std::string error;
  auto args = criu::parse_command_line(criu::kRestore, argv, &error);
  if (!args) return fail(error);
  RestoreOptions options;
  if (int rc = restore_options(&*args, options)) return rc;
  catch_interrupts();  // Ctrl-C stops the restore at its next step; what it made is killed
  auto result = restore(options);
  if (!result.ok()) return fail("restore failed: " + result.error().message());
  write_restore_stats(work_dir(*args), *result);
  if (args->has("display-stats")) {
    printf("restore statistics:\n  root: %d\n  total time: %lu us\n", static_cast<int>(result->root),
           static_cast<unsigned long>(result->total_us));
    fflush(stdout);
  }
  if (options.detach) return 0;
  return result->exit_code;
}

}  // namespace cryo::cli
