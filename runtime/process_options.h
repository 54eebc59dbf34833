// What the process-mode verbs share besides the option table
// (runtime/criu_options.h): the work directory and the log.
#pragma once

#include <string>

#include "runtime/args.h"

namespace cryo::cli {

// Where relative log and pid files go: -W, else -D, else the current directory.
std::string work_dir(const Args& args);
// PATH, or PATH inside the work directory when it is relative.
std::string in_work_dir(const Args& args, const std::string& path);

// Closes the --close descriptors, sets the verbosity and opens the log (`-`
// keeps it on stderr); returns an error message or "".
std::string setup_logging(const Args& args);

}  // namespace cryo::cli
