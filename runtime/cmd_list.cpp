#include <cstdio>

#include <nlohmann/json.hpp>

#include "oci/runtime_log.h"
#include "oci/state.h"
#include "runtime/args.h"
#include "runtime/command.h"

namespace cryo::cli {

int cmd_list(const GlobalOptions& g, const std::vector<std::string>& argv) {
  static const std::vector<OptionSpec> kSpecs = {{{"-f", "--format"}, true}, {{"-q", "--quiet"}, false}};
  std::string error;
  auto args = parse(kSpecs, argv, &error, false);
  if (!args) return oci::report_error("list: " + error);
  if (auto s = oci::setup_runtime_log(g.log, g.log_format, g.debug); !s.ok()) return oci::report_error(s.error().message());
  std::string format = args->get_or("format", "table");
  if (format != "table" && format != "json") return oci::report_error("list: --format must be table or json");
  auto ids = oci::list_ids(g.root);
  if (!ids.ok()) return oci::report_error(ids.error().message());
  std::vector<oci::ContainerState> states;
  for (auto& id : *ids) {
    auto s = oci::load_state(g.root, id);
    if (s.ok()) states.push_back(*s);
  }
  if (args->has("quiet")) {
    for (auto& s : states) printf("%s\n", s.id.c_str());
    return 0;
  }
  if (format == "json") {
    nlohmann::json list = nlohmann::json::array();
    for (auto& s : states)
      list.push_back({{"ociVersion", "1.2.0"}, {"id", s.id}, {"pid", s.status == oci::ContainerStatus::kStopped ? 0 : s.pid},
                      {"status", oci::status_name(s.status)}, {"bundle", s.bundle}, {"rootfs", s.rootfs},
                      {"created", s.created}, {"owner", s.owner}, {"annotations", s.annotations}});
    printf("%s\n", list.dump().c_str());
    return 0;
  }
  printf("%-20s %-8s %-10s %-40s %-32s %s\n", "ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER");
  for (auto& s : states)
    printf("%-20s %-8d %-10s %-40s %-32s %s\n", s.id.c_str(), s.status == oci::ContainerStatus::kStopped ? 0 : s.pid,
           oci::status_name(s.status), s.bundle.c_str(), s.created.c_str(), s.owner.empty() ? "root" : s.owner.c_str());
  return 0;
}

}  // namespace cryo::cli
