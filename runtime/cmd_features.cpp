#include <cstdio>

#include "oci/info.h"
#include "oci/runtime_log.h"
#include "runtime/command.h"

namespace cryo::cli {

int cmd_features(const GlobalOptions&, const std::vector<std::string>& argv) {
  if (!argv.empty()) return oci::report_error("features takes no arguments");
  fputs(oci::features_json().c_str(), stdout);
  return 0;
}

}  // namespace cryo::cli
