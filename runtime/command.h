// The verbs of the cryo binary. Each lives in its own cmd_*.cpp: it parses its
// flags, makes one library call, prints the result and returns the exit code.
#pragma once

#include <optional>
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
  const char* usage;  // `cryo NAME --help`; nullptr for CRIU's verbs, whose usage lists their options
};

// Prints "cryo: <message>" to stderr (and the log) and returns the exit code 1.
int fail(const std::string& message);

// cryo as `criu` (called so, or `cryo criu ...`): serves `swrk FD` and
// answers --version CRIU's way (criu_entry.cpp); nullopt for what main runs
// as cryo's own process verbs (dump, pre-dump, restore, check).
std::optional<int> criu_entry(const std::vector<std::string>& args);
void print_criu_version();

// Process mode.
int cmd_dump(const GlobalOptions&, const std::vector<std::string>&);
int cmd_pre_dump(const GlobalOptions&, const std::vector<std::string>&);
int cmd_restore(const GlobalOptions&, const std::vector<std::string>&);
int cmd_check(const GlobalOptions&, const std::vector<std::string>&);
int cmd_inspect(const GlobalOptions&, const std::vector<std::string>&);
int cmd_network_unlock(const GlobalOptions&, const std::vector<std::string>&);
int cmd_page_server(const GlobalOptions&, const std::vector<std::string>&);
extern const char* const kPageServerUsage;
int cmd_lazy_pages(const GlobalOptions&, const std::vector<std::string>&);
extern const char* const kLazyPagesUsage;

// Runtime mode (runc's verbs).
int cmd_create(const GlobalOptions&, const std::vector<std::string>&);
int cmd_start(const GlobalOptions&, const std::vector<std::string>&);
int cmd_run(const GlobalOptions&, const std::vector<std::string>&);
int cmd_state(const GlobalOptions&, const std::vector<std::string>&);
int cmd_kill(const GlobalOptions&, const std::vector<std::string>&);
int cmd_delete(const GlobalOptions&, const std::vector<std::string>&);
int cmd_list(const GlobalOptions&, const std::vector<std::string>&);
int cmd_ps(const GlobalOptions&, const std::vector<std::string>&);
int cmd_exec(const GlobalOptions&, const std::vector<std::string>&);
int cmd_pause(const GlobalOptions&, const std::vector<std::string>&);
int cmd_resume(const GlobalOptions&, const std::vector<std::string>&);
int cmd_events(const GlobalOptions&, const std::vector<std::string>&);
int cmd_features(const GlobalOptions&, const std::vector<std::string>&);
int cmd_spec(const GlobalOptions&, const std::vector<std::string>&);
int cmd_update(const GlobalOptions&, const std::vector<std::string>&);
int cmd_checkpoint(const GlobalOptions&, const std::vector<std::string>&);
// `restore [flags] ID` (runc's) rather than `restore -D DIR` (CRIU's).
bool is_container_restore(const std::vector<std::string>& argv);
int cmd_restore_container(const GlobalOptions&, const std::vector<std::string>&);
extern const char* const kRestoreContainerUsage;

}  // namespace cryo::cli
