#include <sys/stat.h>

#include <cstdio>

#include "core/checkpoint.h"
#include "core/sys/progress.h"
#include "core/sys/interrupt.h"
#include "core/sys/io.h"
#include "core/sys/log.h"
#include "runtime/command.h"
#include "runtime/criu_options.h"
#include "runtime/page_options.h"
#include "runtime/process_options.h"

namespace cryo::cli {

int dump_options(const Args* args, DumpOptions& options) {
  auto tree = args->get("tree");
  if (!tree) return fail("dump: name the process tree with -t PID");
  options.pid = std::stoi(*tree);
  if (auto timeout = args->get("timeout")) options.freeze_timeout_s = std::stoi(*timeout);
  options.images_dir = args->get_or("images-dir", ".");
  options.shell_job = args->has("shell-job");
  for (const auto& external : args->all("external")) {
    if (external.starts_with("tty[")) options.external_ttys.push_back(external);
    if (external.starts_with("mnt[")) {  // mnt[MOUNT_POINT]:KEY, the key defaulting to the mount point
      size_t close = external.find(']');
      if (close == std::string::npos) return fail("dump: --external " + external + ": want mnt[MOUNT_POINT]:KEY");
      std::string point = external.substr(4, close - 4);
      std::string key = close + 1 < external.size() && external[close + 1] == ':' ? external.substr(close + 2) : point;
      if (!point.empty()) options.external_mounts[point] = key;  // mnt[]: cryo finds them by itself anyway
    }
    if (external.starts_with("net[")) {  // net[INODE]:KEY: the tree's network namespace is the caller's
      size_t close = external.find("]:");
      std::string inode = close == std::string::npos ? "" : external.substr(4, close - 4);
      if (inode.empty() || inode.find_first_not_of("0123456789") != std::string::npos || close + 2 == external.size())
        return fail("dump: --external " + external + ": want net[INODE]:KEY");
      options.net_ns.externals[inode] = external.substr(close + 2);
    }
  }
  options.net_ns.empty = args->has("empty-ns");  // its only value is net
  options.leave_running = args->has("leave-running");
  options.tcp_established = args->has("tcp-established");
  options.tcp_close = args->has("tcp-close");
  options.skip_in_flight = args->has("skip-in-flight");
  options.ext_unix_sk = args->has("ext-unix-sk");
  if (auto limit = args->get("ghost-limit")) options.ghost_limit = *criu::parse_size(*limit);
  options.network_lock = args->get_or("network-lock", "nftables");
  options.freeze_cgroup = args->get_or("freeze-cgroup", "");
  options.prev_images_dir = args->get_or("prev-images-dir", "");
  for (const auto& script : args->all("action-script")) options.actions.add_script(script);
  options.actions.set_image_dir(options.images_dir);
  for (const auto& arg : args->all("cgroup-root")) {
    auto root = cgroup::parse_cgroup_root(arg);
    if (!root.ok()) return fail("dump: " + root.error().message());
    options.cgroup_roots.push_back(*root);
  }
  if (args->has("page-server") && args->has("lazy-pages"))
    return fail("dump: --lazy-pages serves the pages itself at --address/--port: drop --page-server");
  if (args->has("page-server")) {
    std::string error;
    options.page_server = page_endpoint(*args, true, &error);
    if (!error.empty()) return fail("dump: --page-server: " + error);
  }
  if (args->has("lazy-pages")) {
    std::string error;
    options.lazy_pages = page_endpoint(*args, false, &error);
    if (!error.empty()) return fail("dump: --lazy-pages: " + error);
    // --port 0 prints the port it got; --status-fd gets its zero byte.
    bool print_port = options.lazy_pages->port == 0;
    options.on_lazy_ready = [args = *args, print_port](int port) {
      if (print_port) {
        printf("%d\n", port);
        fflush(stdout);
      }
      report_ready(args);
    };
  }
  ::mkdir(options.images_dir.c_str(), 0700);
  if (auto e = setup_logging(*args); !e.empty()) return fail("dump: " + e);
  return 0;
}

void write_dump_stats(const std::string& dir, const DumpResult& result) {
  char stats[704];
  snprintf(stats, sizeof stats,
           "{\"freeze_us\":%lu,\"freeze_cpu_us\":%lu,\"precopy_freeze_us\":%lu,\"precopy_us\":%lu,\"total_us\":%lu,"
           "\"pages_bytes\":%lu,\"pages_copied_in\":%lu,\"pages_zero_tested\":%lu,\"pages_checksummed\":%lu,"
           "\"pages_written_by_tasks\":%lu,\"tasks\":%zu,\"page_writers\":%u,\"phases\":",
           static_cast<unsigned long>(result.freeze_us), static_cast<unsigned long>(result.freeze_cpu_us),
           static_cast<unsigned long>(result.precopy_freeze_us), static_cast<unsigned long>(result.precopy_us),
           static_cast<unsigned long>(result.total_us), static_cast<unsigned long>(result.pages_bytes),
           static_cast<unsigned long>(result.pages_copied_in), static_cast<unsigned long>(result.pages_zero_tested),
           static_cast<unsigned long>(result.pages_checksummed),
           static_cast<unsigned long>(result.pages_written_by_tasks), result.tasks, result.page_writers);
  auto st = write_file_atomic(dir + "/stats-dump.json", stats + progress::to_json(result.phases) + "}\n");
  if (!st.ok()) log::warn("stats-dump.json: " + st.error().message());
}

int cmd_dump(const GlobalOptions&, const std::vector<std::string>& argv) {
  std::string error;
  auto args = criu::parse_command_line(criu::kDump, argv, &error);
  if (!args) return fail(error);
  DumpOptions options;
  if (int rc = dump_options(&*args, options)) return rc;
  catch_interrupts();  // Ctrl-C stops the dump at its next step; the tree runs on
  auto result = checkpoint(options);
  if (!result.ok()) return fail("dump failed: " + result.error().message());
  write_dump_stats(options.images_dir, *result);
  if (args->has("display-stats"))
    printf("dump statistics:\n  tasks: %zu\n  frozen for: %lu us\n  total time: %lu us\n  memory saved: %lu bytes\n",
           result->tasks, static_cast<unsigned long>(result->freeze_us),
           static_cast<unsigned long>(result->total_us), static_cast<unsigned long>(result->pages_bytes));
  log::info("dump of pid " + std::to_string(options.pid) + " finished");
  return 0;
}

}  // namespace cryo::cli
