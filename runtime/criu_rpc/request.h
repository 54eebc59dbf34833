// A CRIU RPC request's options (criu_opts) as the CRIU command line they
// stand for, so that the RPC door and `cryo dump|restore` take, act on and
// refuse exactly the same things (runtime/criu_option_table.cpp). What only
// the RPC has (notify_scripts, orphan_pts_master, rst_sibling, descriptors
// of the caller) is answered here or by the door (swrk.h).
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/sys/result.h"
#include "runtime/args.h"
#include "runtime/criu_options.h"
#include "runtime/criu_rpc/criu_rpc.pb.h"

namespace cryo::cli::criu_rpc {

// A descriptor number of the caller's as a path cryo can open.
using FdPath = std::function<Result<std::string>(int fd)>;

// The command line (without the verb) that opts stands for, for a dump or a
// restore. Fails, naming the field (criu_opts.lazy_pages: ...), on a field
// cryo does not know or cannot honour, as the command line would.
Result<std::vector<std::string>> command_line(const cryo::criurpc::criu_opts& opts, criu::Verb verb,
                                              const FdPath& caller_fd);

// command_line, then CRIU's parser on it: the options the engine gets.
Result<Args> parse_request(const cryo::criurpc::criu_opts& opts, criu::Verb verb, const FdPath& caller_fd);

}  // namespace cryo::cli::criu_rpc
