// The process-mode dump and restore, from a parsed CRIU command line to the
// engine's result, for the CRIU RPC door (criu swrk, runtime/criu_rpc/): the
// options come from dump_options / restore_options (process_options.h), as
// `cryo dump|restore` has them, so that an option means the same by either.
#pragma once

#include <functional>

#include "core/checkpoint.h"
#include "core/restore.h"
#include "core/sys/result.h"
#include "runtime/args.h"

namespace cryo::cli {

// Runs the dump ARGS asks for; `adjust` may add to the engine's options
// before it starts (the RPC's notifications). The error reads as the
// command's would: "dump failed: ...".
Result<DumpResult> dump_from_args(const Args& args, const std::function<void(DumpOptions&)>& adjust = {});

// The same for a pre-dump: ARGS are a dump's (CRIU takes every option with
// every command), the pre-dump acts on those of memory ("pre-dump failed: ...").
Result<DumpResult> pre_dump_from_args(const Args& args, const std::function<void(DumpOptions&)>& adjust = {});

// The same for a restore.
Result<RestoreResult> restore_from_args(const Args& args, const std::function<void(RestoreOptions&)>& adjust = {});

}  // namespace cryo::cli
