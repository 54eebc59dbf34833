// cryo: checkpoint/restore for Linux process trees and OCI containers.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/guard/guard.h"
#include "core/sys/log.h"
#include "runtime/args.h"
#include "runtime/command.h"

namespace cryo::cli {
namespace {

const Command kCommands[] = {
    {"dump", cmd_dump, "save a running process tree into an image directory"},
    {"restore", cmd_restore, "restore a process tree from an image directory"},
    {"check", cmd_check, "report the kernel features cryo relies on"},
    {"inspect", cmd_inspect, "print an image directory as JSON"},
    {"network-unlock", cmd_network_unlock, "drop the network lock a dump left (-D DIR)"},
    {"create", cmd_create, "create a container from a bundle"},
    {"start", cmd_start, "start the process of a created container"},
    {"run", cmd_run, "create and start a container"},
    {"state", cmd_state, "print the OCI state of a container"},
    {"kill", cmd_kill, "send a signal to a container's init (or --all)"},
    {"delete", cmd_delete, "delete a container"},
    {"list", cmd_list, "list containers"},
    {"ps", cmd_ps, "list a container's processes"},
    {"exec", cmd_exec, "run a process in a container"},
    {"pause", cmd_pause, "freeze a container"},
    {"resume", cmd_resume, "thaw a paused container"},
    {"events", cmd_events, "print a container's resource usage"},
    {"features", cmd_features, "print the runtime's features as JSON"},
    {"spec", cmd_spec, "write a default config.json"},
    {"update", cmd_update, "change a container's cgroup limits"},
};

void usage(FILE* out) {
  fprintf(out,
          "usage: cryo [global options] COMMAND [options]\n\n"
          "global options:\n"
          "  --root DIR          state directory for containers (default /run/cryo)\n"
          "  --log FILE          log file\n"
          "  --log-format FMT    text or json\n"
          "  --debug             verbose logging\n"
          "  --version, --help\n\ncommands:\n");
  for (const auto& c : kCommands) fprintf(out, "  %-10s %s\n", c.name, c.summary);
}

}  // namespace

int fail(const std::string& message) {
  log::error(message);
  return 1;
}

}  // namespace cryo::cli

int main(int argc, char** argv) {
  using namespace cryo::cli;
  std::vector<std::string> args(argv + 1, argv + argc);
  static const std::vector<OptionSpec> kGlobal = {
      {{"--root"}, true},       {{"--log"}, true},           {{"--log-format"}, true},
      {{"--debug"}, false},     {{"--systemd-cgroup"}, false}, {{"--version", "-V"}, false},
      {{"--help", "-h"}, false},
  };
  std::string error;
  auto global = parse(kGlobal, args, &error, /*stop_at_positional=*/true);
  if (!global) {
    fprintf(stderr, "cryo: %s\n", error.c_str());
    return 1;
  }
  if (global->has("version")) {
    printf("cryo version %s\nspec: 1.2.0\n", CRYO_VERSION);
    return 0;
  }
  const auto& rest = global->positional();
  if (global->has("help") || rest.empty()) {
    usage(global->has("help") ? stdout : stderr);
    return global->has("help") ? 0 : 1;
  }
  GlobalOptions options;
  options.root = global->get_or("root", options.root);
  options.log = global->get_or("log", "");
  options.log_format = global->get_or("log-format", "text");
  options.debug = global->has("debug");
  options.systemd_cgroup = global->has("systemd-cgroup");
  // Not a user's command: the watchdog that outlives a dump or a restore (core/guard/guard.h).
  if (rest[0] == "guard" && rest.size() == 4)
    return cryo::run_guard(rest[1] == "-" ? "" : rest[1], rest[2], std::atoi(rest[3].c_str()));
  for (const auto& c : kCommands) {
    if (rest[0] == c.name) return c.run(options, std::vector<std::string>(rest.begin() + 1, rest.end()));
  }
  fprintf(stderr, "cryo: unknown command '%s' (see cryo --help)\n", rest[0].c_str());
  return 1;
}
