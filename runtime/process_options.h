// Options shared by the process-mode verbs (CRIU's spellings).
#pragma once

#include <string>
#include <vector>

#include "runtime/args.h"

namespace cryo::cli {

// -o/--log-file and -v/--verbosity, common to dump and restore.
std::vector<OptionSpec> logging_options();

// Opens the log (a relative path lands in the image directory) and sets
// the verbosity; returns an error message or "".
std::string setup_logging(const Args& args, const std::string& images_dir);

}  // namespace cryo::cli
