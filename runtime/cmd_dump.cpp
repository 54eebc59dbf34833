#include <sys/stat.h>

#include <cstdio>
#include <optional>

#include "core/checkpoint.h"
#include "core/sys/io.h"
#include "core/sys/interrupt.h"
#include "core/sys/log.h"
#include "runtime/command.h"
#include "runtime/process_options.h"

namespace cryo::cli {
namespace {

// "1048576", "512K", "64M", "1G" -> bytes
std::optional<uint64_t> parse_size(const std::string& text) {
  size_t end = 0;
  uint64_t n = 0;
  try {
    n = std::stoull(text, &end);
  } catch (...) {
    return std::nullopt;
  }
  std::string unit = text.substr(end);
  int shift = unit.empty() ? 0 : unit == "K" || unit == "k" ? 10 : unit == "M" || unit == "m" ? 20 : unit == "G" || unit == "g" ? 30 : -1;
  if (shift < 0 || text[0] == '-' || n > (UINT64_MAX >> shift)) return std::nullopt;
  return n << shift;
}

}  // namespace

int cmd_dump(const GlobalOptions&, const std::vector<std::string>& argv) {
  std::vector<OptionSpec> specs = {
      {{"-t", "--tree"}, true},           {{"-D", "--images-dir"}, true}, {{"-j", "--shell-job"}, false},
      {{"-R", "--leave-running"}, false}, {{"--timeout"}, true},          {{"--tcp-established"}, false},
      {{"--network-lock"}, true},       {{"--ext-unix-sk"}, false},        {{"--ghost-limit"}, true},
  };
  for (auto& s : logging_options()) specs.push_back(s);
  std::string error;
  auto args = parse(specs, argv, &error);
  if (!args) return fail("dump: " + error);
  DumpOptions options;
  auto tree = args->get("tree");
  if (!tree) return fail("dump: name the process tree with -t PID");
  try {
    options.pid = std::stoi(*tree);
  } catch (...) {
    return fail("dump: bad pid '" + *tree + "'");
  }
  if (auto timeout = args->get("timeout")) {
    try {
      options.freeze_timeout_s = std::stoi(*timeout);
    } catch (...) {
      return fail("dump: bad --timeout '" + *timeout + "'");
    }
    if (options.freeze_timeout_s <= 0) return fail("dump: --timeout must be a positive number of seconds");
  }
  options.images_dir = args->get_or("images-dir", ".");
  options.shell_job = args->has("shell-job");
  options.leave_running = args->has("leave-running");
  options.tcp_established = args->has("tcp-established");
  options.ext_unix_sk = args->has("ext-unix-sk");
  if (auto limit = args->get("ghost-limit")) {
    auto bytes = parse_size(*limit);
    if (!bytes) return fail("dump: bad --ghost-limit '" + *limit + "' (bytes, or a number with K, M or G)");
    options.ghost_limit = *bytes;
  }
  options.network_lock = args->get_or("network-lock", "nftables");
  if (options.network_lock != "nftables" && options.network_lock != "iptables" && options.network_lock != "skip")
    return fail("dump: --network-lock " + options.network_lock + " is not supported (nftables, iptables or skip)");
  ::mkdir(options.images_dir.c_str(), 0700);
  if (auto e = setup_logging(*args, options.images_dir); !e.empty()) return fail("dump: " + e);

  catch_interrupts();  // Ctrl-C stops the dump at its next step; the tree runs on
  auto result = checkpoint(options);
  if (!result.ok()) return fail("dump failed: " + result.error().message());
  char stats[256];
  snprintf(stats, sizeof stats, "{\"freeze_us\":%lu,\"total_us\":%lu,\"pages_bytes\":%lu,\"tasks\":%zu}\n",
           static_cast<unsigned long>(result->freeze_us), static_cast<unsigned long>(result->total_us),
           static_cast<unsigned long>(result->pages_bytes), result->tasks);
  auto st = write_file_atomic(options.images_dir + "/stats-dump.json", stats);
  if (!st.ok()) log::warn("stats-dump.json: " + st.error().message());
  log::info("dump of pid " + std::to_string(options.pid) + " finished");
  return 0;
}

}  // namespace cryo::cli
