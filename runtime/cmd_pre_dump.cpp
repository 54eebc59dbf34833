#include <cstdio>

#include "core/checkpoint.h"
#include "core/sys/interrupt.h"
#include "core/sys/log.h"
#include "runtime/command.h"
#include "runtime/criu_options.h"
#include "runtime/process_options.h"

namespace cryo::cli {

// CRIU's pre-dump: the tree's memory is copied ahead of the dump and the
// tree runs on with its writes tracked; `cryo dump --prev-images-dir DIR`
// (or another pre-dump) then stores only what changed since.
int cmd_pre_dump(const GlobalOptions&, const std::vector<std::string>& argv) {
  std::string error;
  auto args = criu::parse_command_line(criu::kPreDump, argv, &error);
  if (!args) return fail(error);
  DumpOptions options;
  if (int rc = dump_options(&*args, options)) return rc;
  catch_interrupts();
  auto result = pre_dump(options);
  if (!result.ok()) return fail("pre-dump failed: " + result.error().message());
  write_dump_stats(options.images_dir, *result);
  if (args->has("display-stats"))
    printf("pre-dump statistics:\n  tasks: %zu\n  frozen for: %lu us\n  total time: %lu us\n  memory saved: %lu bytes\n",
           result->tasks, static_cast<unsigned long>(result->freeze_us),
           static_cast<unsigned long>(result->total_us), static_cast<unsigned long>(result->pages_bytes));
  log::info("pre-dump of pid " + std::to_string(options.pid) + " finished");
  return 0;
}

}  // namespace cryo::cli
