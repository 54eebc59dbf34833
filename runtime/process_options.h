// What the process-mode verbs share besides the option table
// (runtime/criu_options.h): the work directory and the log.
#pragma once

#include <string>

#include "runtime/args.h"

namespace cryo {
struct DumpOptions;
struct DumpResult;
struct RestoreOptions;
struct RestoreResult;
}  // namespace cryo

namespace cryo::cli {

// Where relative log and pid files go: -W, else -D, else the current directory.
std::string work_dir(const Args& args);
// PATH, or PATH inside the work directory when it is relative.
std::string in_work_dir(const Args& args, const std::string& path);

// Closes the --close descriptors, sets the verbosity and opens the log (`-`
// keeps it on stderr); returns an error message or "".
std::string setup_logging(const Args& args);

// The engine's options from a parsed `dump` / `restore` command line (it sets
// up the log too): 0, or the exit code of a failure already reported. The
// runtime's checkpoint and restore build CRIU's words for a container and
// come here, so that cryo.yaml and --config apply to them as well.
int dump_options(const Args* args, DumpOptions& options);
int restore_options(const Args* args, RestoreOptions& options);
// DIR/stats-dump.json: the freeze time, the total time, the bytes written.
void write_dump_stats(const std::string& dir, const DumpResult& result);
// DIR/stats-restore.json: the total time, each phase's, the bytes of memory
// written in and by how many threads. A directory cryo cannot write (a
// read-only image) only costs the file.
void write_restore_stats(const std::string& dir, const RestoreResult& result);

}  // namespace cryo::cli
