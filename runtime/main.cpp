// cryo: checkpoint/restore for Linux process trees and OCI containers.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/guard/guard.h"
#include "core/image/image.h"
#include "core/sys/log.h"
#include "runtime/args.h"
#include "runtime/command.h"
#include "runtime/criu_options.h"

namespace cryo::cli {
namespace {

const Command kCommands[] = {
    {"dump", cmd_dump, "save a running process tree into an image directory", nullptr},
    {"pre-dump", cmd_pre_dump, "copy a tree's memory ahead of a dump and track its writes", nullptr},
    {"restore", cmd_restore, "restore a process tree from an image directory", nullptr},
    {"check", cmd_check, "report the kernel features cryo relies on", nullptr},
    {"inspect", cmd_inspect, "print an image directory as JSON",
     "usage: cryo inspect DIR [--pages]\n       cryo inspect -D DIR [--pages]\n"
     "       cryo inspect REF | FILE.tar [--pages] [--tls-verify=false]   (an image of checkpoint --image-ref)\n\n"
     "Prints the image in DIR as JSON after checking every checksum; --pages adds the memory pages.\n"},
    {"page-server", cmd_page_server, "receive a dump's pages over the network (-D DIR --port P)", kPageServerUsage},
    {"lazy-pages", cmd_lazy_pages, "serve the memory of a restore --lazy-pages (-D DIR)", kLazyPagesUsage},
    {"network-unlock", cmd_network_unlock, "drop the network lock a dump left (-D DIR)",
     "usage: cryo network-unlock -D DIR\n\n"
     "Removes the network lock the dump of DIR left for its restore (for an image that will not be\n"
     "restored, or after a failed restore).\n"},
    {"create", cmd_create, "create a container from a bundle",
     "usage: cryo create [--bundle DIR] [--pid-file FILE] [--console-socket SOCK] [--no-pivot]\n"
     "                   [--no-new-keyring] [--preserve-fds N] ID\n\n"
     "Creates container ID from the bundle (config.json and its rootfs); `start` runs its process.\n"},
    {"start", cmd_start, "start the process of a created container", "usage: cryo start ID\n"},
    {"run", cmd_run, "create and start a container",
     "usage: cryo run [-d|--detach] [--bundle DIR] [--pid-file FILE] [--console-socket SOCK]\n"
     "                [--no-pivot] [--no-new-keyring] [--preserve-fds N] [--keep] ID\n\n"
     "Creates and starts container ID; without -d waits for it and exits with its status.\n"},
    {"state", cmd_state, "print the OCI state of a container", "usage: cryo state ID\n"},
    {"kill", cmd_kill, "send a signal to a container's init (or --all)",
     "usage: cryo kill [-a|--all] ID [SIGNAL]\n\nSends SIGNAL (SIGTERM by default) to the container's init, "
     "or to all its processes.\n"},
    {"delete", cmd_delete, "delete a container", "usage: cryo delete [-f|--force] ID\n"},
    {"list", cmd_list, "list containers", "usage: cryo list [-f|--format table|json] [-q|--quiet]\n"},
    {"ps", cmd_ps, "list a container's processes", "usage: cryo ps [-f|--format table|json] ID [PS OPTIONS]\n"},
    {"exec", cmd_exec, "run a process in a container",
     "usage: cryo exec [--process FILE] [-d] [-t] [--env K=V]... [--cwd DIR] [-u UID[:GID]]\n"
     "                 [--pid-file FILE] [--console-socket SOCK] [--cap CAP]... ID [COMMAND ARGS...]\n"},
    {"pause", cmd_pause, "freeze a container", "usage: cryo pause ID\n"},
    {"resume", cmd_resume, "thaw a paused container", "usage: cryo resume ID\n"},
    {"events", cmd_events, "print a container's resource usage",
     "usage: cryo events [--stats] [--interval DURATION] ID\n"},
    {"features", cmd_features, "print the runtime's features as JSON", "usage: cryo features\n"},
    {"spec", cmd_spec, "write a default config.json", "usage: cryo spec [-b|--bundle DIR] [--rootless]\n"},
    {"update", cmd_update, "change a container's cgroup limits",
     "usage: cryo update [-r|--resources FILE|-] [--memory N] [--memory-reservation N] [--memory-swap N]\n"
     "                   [--cpu-shares N] [--cpu-quota N] [--cpu-period N] [--cpuset-cpus LIST]\n"
     "                   [--cpuset-mems LIST] [--pids-limit N] [--blkio-weight N] ID\n"},
    {"checkpoint", cmd_checkpoint, "checkpoint a running container into an image directory",
     "usage: cryo checkpoint [--image-path DIR] [--work-path DIR] [--leave-running] [--tcp-established]\n"
     "                       [--ext-unix-sk] [--shell-job] [--file-locks] [--empty-ns network]\n"
     "                       [--manage-cgroups-mode soft|full|strict|ignore] [--auto-dedup] [--status-fd FD]\n"
     "                       [--export FILE] [--image-ref REF] [--tls-verify=false] [--compress none|gzip|zstd]\n"
     "                       [--ignore-rootfs] [--pre-dump] [--parent-path REL] [--page-server ADDR:PORT] [--lazy-pages] ID\n\n"
     "Saves container ID (running or paused) into --image-path (./checkpoint by default; dump.log and\n"
     "stats-dump.json go into --work-path), then removes the container unless --leave-running.\n"
     "--export writes the checkpoint as a tar archive in Podman's layout, --image-ref as an OCI image\n"
     "(one layer, that archive; zstd by default): oci:DIR[:TAG], oci-archive:FILE[:TAG], and through skopeo\n"
     "docker://HOST[:PORT]/NAME:TAG and containers-storage:NAME. `cryo restore --import FILE` / `--image-ref\n"
     "REF` take them. Both carry what the container changed in an overlay rootfs (rootfs-diff.tar,\n"
     "deleted.files; not with --ignore-rootfs) and its network namespace's addresses (network.status).\n"
     "--pre-dump copies the container's memory only and leaves it running with its writes tracked;\n"
     "--parent-path ../PRE (relative to --image-path) then stores only what changed since that pre-dump.\n"
     "--page-server sends the pages to `cryo page-server`; with --lazy-pages (a lazy migration) the container's\n"
     "memory stays in it, served at that ADDRESS:PORT to `cryo lazy-pages --page-server` until the destination\n"
     "has it all (--status-fd FD gets a zero byte once it serves), then the container goes.\n"
     "`cryo restore [--bundle DIR] ... ID` brings it back.\n"},
};

void usage(FILE* out) {
  fprintf(out,
          "usage: cryo [global options] COMMAND [options]\n\n"
          "global options:\n"
          "  --root DIR          state directory for containers (default /run/cryo)\n"
          "  --log FILE          log file\n"
          "  --log-format FMT    text or json\n"
          "  --debug             verbose logging\n"
          "  --version, --help\n"
          "CRIU's options may also come before a process-mode command (cryo -v4 dump ...).\n\n"
          "commands (cryo COMMAND --help for each):\n");
  for (const auto& c : kCommands) fprintf(out, "  %-15s %s\n", c.name, c.summary);
}

void version() {
  printf("cryo version %s\nimage format version %u (written; %u to %u read)\nspec: 1.2.0\n", CRYO_VERSION,
         static_cast<unsigned>(image::kFormatVersion), static_cast<unsigned>(image::kOldestFormatVersion),
         static_cast<unsigned>(image::kFormatVersion));
}

std::optional<criu::Verb> criu_verb(const std::string& name) {
  if (name == "dump") return criu::kDump;
  if (name == "pre-dump") return criu::kPreDump;
  if (name == "restore") return criu::kRestore;
  if (name == "check") return criu::kCheck;
  return std::nullopt;
}

// Whether the verb's words ask for its usage (or, for CRIU's verbs, the
// version). exec's words after the container id are the command's own.
bool asks_for(const std::vector<std::string>& words, bool stop_at_positional,
              std::initializer_list<const char*> flags) {
  for (const auto& w : words) {
    if (w == "--") return false;
    if (stop_at_positional && !w.starts_with("-")) return false;
    for (const char* f : flags)
      if (w == f) return true;
  }
  return false;
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
  // Called `criu` (a symlink; runc --criu) or `cryo criu ...`: CRIU's binary.
  std::string called = argc > 0 ? argv[0] : "";
  bool as_criu = called.substr(called.rfind('/') + 1) == "criu";
  if (!as_criu && !args.empty() && args[0] == "criu") {
    as_criu = true;
    args.erase(args.begin());
  }
  if (as_criu) {
    if (auto rc = criu_entry(args)) return *rc;
  }
  static const std::vector<OptionSpec> kGlobal = {
      {{"--root"}, true},       {{"--log"}, true},           {{"--log-format"}, true},
      {{"--debug"}, false},     {{"--systemd-cgroup"}, false}, {{"--version", "-V"}, false},
      {{"--help", "-h"}, false},
  };
  std::string error;
  auto global = parse(kGlobal, args, &error, /*stop_at_positional=*/true);
  std::vector<std::string> before_verb;  // CRIU's options written before a process-mode verb
  if (!global) {
    // CRIU takes its options on either side of the command: "criu -v4 dump -t 1".
    std::vector<OptionSpec> both = kGlobal;
    for (auto& s : criu::specs()) both.push_back(s);
    std::string ignored;
    auto found = parse(both, args, &ignored, /*stop_at_positional=*/true);
    if (!found || found->positional().empty() || !criu_verb(found->positional()[0])) {
      fprintf(stderr, "cryo: %s\n", error.c_str());
      return 1;
    }
    size_t verb_at = args.size() - found->positional().size();
    before_verb.assign(args.begin(), args.begin() + static_cast<long>(verb_at));
    global = Args();
    global->positional_ = found->positional();
  }
  if (global->has("version")) {
    as_criu ? print_criu_version() : version();
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
  if (rest[0] == "guard" && rest.size() == 6)
    return cryo::run_guard(rest[1] == "-" ? "" : rest[1], rest[2], std::atoi(rest[3].c_str()), rest[4],
                           std::strtoull(rest[5].c_str(), nullptr, 10));
  if (as_criu && !criu_verb(rest[0])) {
    fprintf(stderr, "criu: unknown command '%s' (cryo as criu answers dump, pre-dump, restore, check and swrk)\n",
            rest[0].c_str());
    return 1;
  }
  for (const auto& c : kCommands) {
    if (rest[0] != c.name) continue;
    std::vector<std::string> words = before_verb;
    words.insert(words.end(), rest.begin() + 1, rest.end());
    auto verb = criu_verb(c.name);
    if (asks_for(words, std::string(c.name) == "exec", {"-h", "--help"})) {
      printf("%s", verb ? criu::usage(*verb).c_str() : c.usage);
      if (std::string(c.name) == "restore") printf("\nRuntime mode (runc's restore of a container):\n%s", kRestoreContainerUsage);
      return 0;
    }
    if (verb && asks_for(words, false, {"-V", "--version"})) {
      as_criu ? print_criu_version() : version();
      return 0;
    }
    return c.run(options, words);
  }
  fprintf(stderr, "cryo: unknown command '%s' (see cryo --help)\n", rest[0].c_str());
  return 1;
}
