#include "runtime/command.h"
#include "runtime/criu_options.h"

namespace cryo::cli {

// CRIU's pre-dump copies memory ahead of a dump that then saves only what
// changed. cryo's images are always complete: its options are read (so that
// a mistake is named first), then the verb itself is refused.
int cmd_pre_dump(const GlobalOptions&, const std::vector<std::string>& argv) {
  std::string error;
  auto args = criu::parse_command_line(criu::kPreDump, argv, &error);
  if (!args) return fail(error);
  return fail("pre-dump is not supported: cryo has no incremental dumps (a dump saves all memory; "
              "`cryo dump -R` takes a checkpoint and leaves the tree running)");
}

}  // namespace cryo::cli
