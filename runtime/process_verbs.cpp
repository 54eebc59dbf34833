#include "runtime/process_verbs.h"

#include "core/sys/interrupt.h"
#include "core/sys/log.h"
#include "runtime/process_options.h"

namespace cryo::cli {

Result<DumpResult> dump_from_args(const Args& args, const std::function<void(DumpOptions&)>& adjust) {
  DumpOptions options;
  if (dump_options(&args, options)) return Error(log::last_error());
  if (adjust) adjust(options);
  catch_interrupts();  // Ctrl-C stops the dump at its next step; the tree runs on
  auto result = checkpoint(options);
  if (!result.ok()) return Error(result.error().code(), "dump failed: " + result.error().context());
  write_dump_stats(options.images_dir, *result);
  log::info("dump of pid " + std::to_string(options.pid) + " finished");
  return result;
}

Result<DumpResult> pre_dump_from_args(const Args& args, const std::function<void(DumpOptions&)>& adjust) {
  DumpOptions options;
  if (dump_options(&args, options)) return Error(log::last_error());
  if (adjust) adjust(options);
  catch_interrupts();  // Ctrl-C stops the pre-dump at its next step; the tree runs on
  auto result = pre_dump(options);
  if (!result.ok()) return Error(result.error().code(), "pre-dump failed: " + result.error().context());
  write_dump_stats(options.images_dir, *result);
  log::info("pre-dump of pid " + std::to_string(options.pid) + " finished");
  return result;
}

Result<RestoreResult> restore_from_args(const Args& args, const std::function<void(RestoreOptions&)>& adjust) {
  RestoreOptions options;
  if (restore_options(&args, options)) return Error(log::last_error());
  if (adjust) adjust(options);
  catch_interrupts();  // Ctrl-C stops the restore at its next step; what it made is killed
  auto result = restore(options);
  if (!result.ok()) return Error(result.error().code(), "restore failed: " + result.error().context());
  write_restore_stats(work_dir(args), *result);
  return result;
}

}  // namespace cryo::cli
