#include <unistd.h>

#include <cstdio>

#include <nlohmann/json.hpp>

#include "oci/container.h"
#include "oci/runtime_log.h"
#include "runtime/args.h"
#include "runtime/command.h"

namespace cryo::cli {
namespace {

// "5s", "500ms", "2" (seconds) to milliseconds; -1 when malformed.
long interval_ms(const std::string& text) {
  size_t digits = text.find_first_not_of("0123456789");
  if (digits == 0 || text.size() > 12) return -1;
  long n = std::stol(text.substr(0, digits));
  std::string unit = digits == std::string::npos ? "s" : text.substr(digits);
  if (unit == "ms") return n;
  if (unit == "s") return n * 1000;
  if (unit == "m") return n * 60000;
  return -1;
}

nlohmann::json stats_event(const std::string& id, const std::map<std::string, uint64_t>& stats) {
  nlohmann::json data = nlohmann::json::object();
  auto get = [&](const char* key) { auto it = stats.find(key); return it == stats.end() ? uint64_t{0} : it->second; };
  data["cpu"] = {{"usage", {{"total", get("cpu.usage.total")}}}};
  data["memory"] = {{"usage", {{"usage", get("memory.usage")}, {"limit", get("memory.limit")}, {"max", get("memory.max_usage")}}}};
  data["pids"] = {{"current", get("pids.current")}, {"limit", get("pids.limit")}};
  return {{"type", "stats"}, {"id", id}, {"data", data}};
}

}  // namespace

int cmd_events(const GlobalOptions& g, const std::vector<std::string>& argv) {
  static const std::vector<OptionSpec> kSpecs = {{{"--stats"}, false}, {{"--interval"}, true}};
  std::string error;
  auto args = parse(kSpecs, argv, &error, true);
  if (!args) return oci::report_error("events: " + error);
  if (auto s = oci::setup_runtime_log(g.log, g.log_format, g.debug); !s.ok()) return oci::report_error(s.error().message());
  if (args->positional().size() != 1) return oci::report_error("events: give exactly one container id");
  const std::string& id = args->positional()[0];
  long every = interval_ms(args->get_or("interval", "5s"));
  if (every <= 0) return oci::report_error("events: bad --interval '" + args->get_or("interval", "") + "'");
  uint64_t oom_kills = 0;
  bool first = true;
  for (;;) {
    auto stats = oci::container_stats(g.root, id);
    if (!stats.ok()) return oci::report_error(stats.error().message());
    // Streaming: an OOM kill since the last look is an "oom" event, as runc reports it.
    uint64_t kills = stats->count("memory.oom_kill") ? stats->at("memory.oom_kill") : 0;
    if (!first && kills > oom_kills) printf("%s\n", nlohmann::json({{"type", "oom"}, {"id", id}}).dump().c_str());
    oom_kills = kills;
    first = false;
    printf("%s\n", stats_event(id, *stats).dump().c_str());
    fflush(stdout);
    if (args->has("stats")) return 0;
    auto state = oci::load_state(g.root, id);
    if (!state.ok() || state->status == oci::ContainerStatus::kStopped) return 0;
    usleep(static_cast<useconds_t>(every) * 1000);
  }
}

}  // namespace cryo::cli
