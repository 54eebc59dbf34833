// The verbs of the cryo binary. Each lives in its own cmd_*.cpp: it parses its
// flags, makes one library call, prints the result and returns the exit code.
#pragma once

#include <string>
#include <vector>

namespace cryo::cli {

// Flags that come before the verb (runc's global options).
struct GlobalOptions {
  std::string root = "/run/cryo";
  std::string log;
  std::string log_format = "text";
  bool debug = false;
  bool systemd_cgroup = false;
};

using CommandFn = int (*)(const GlobalOptions&, const std::vector<std::string>& args);

struct Command {
  const char* name;
  CommandFn run;
  const char* summary;
};

// Prints "cryo: <message>" to stderr (and the log) and returns the exit code 1.
int fail(const std::string& message);

// Process mode.
int cmd_dump(const GlobalOptions&, const std::vector<std::string>&);
int cmd_restore(const GlobalOptions&, const std::vector<std::string>&);
int cmd_check(const GlobalOptions&, const std::vector<std::string>&);
int cmd_inspect(const GlobalOptions&, const std::vector<std::string>&);

}  // namespace cryo::cli
