// runc's `checkpoint [flags] ID`: the container's tree dumped by the engine,
// with CRIU's options built from its state and config.json (oci/checkpoint/).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <filesystem>
#include <optional>

#include "core/checkpoint.h"
#include "core/sys/progress.h"
#include "core/sys/interrupt.h"
#include "core/sys/scope_guard.h"
#include "oci/checkpoint/checkpoint.h"
#include "oci/checkpoint/criu_stats.h"
#include "oci/checkpoint/network_status.h"
#include "oci/image/checkpoint_image.h"
#include "oci/runtime_log.h"
#include "runtime/args.h"
#include "runtime/command.h"
#include "runtime/criu_options.h"
#include "runtime/process_options.h"

namespace cryo::cli {
namespace {

const std::vector<OptionSpec> kCheckpointSpecs = {
    {{"--image-path"}, true},        {{"--work-path"}, true},     {{"--parent-path"}, true},
    {{"--leave-running"}, false},    {{"--tcp-established"}, false}, {{"--ext-unix-sk"}, false},
    {{"--shell-job"}, false},        {{"--lazy-pages"}, false},   {{"--status-fd"}, true},
    {{"--page-server"}, true},       {{"--file-locks"}, false},   {{"--pre-dump"}, false},
    {{"--manage-cgroups-mode"}, true}, {{"--empty-ns"}, true, true}, {{"--auto-dedup"}, false},
    {{"--export"}, true},            {{"--image-ref"}, true},     {{"--compress"}, true},
    {{"--tls-verify"}, true},        {{"--ignore-rootfs"}, false},
};

// runc's --page-server ADDRESS:PORT (an IPv6 address in brackets).
std::optional<std::pair<std::string, std::string>> split_page_server(const std::string& value) {
  size_t colon = value.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == value.size()) return std::nullopt;
  std::string address = value.substr(0, colon), port = value.substr(colon + 1);
  if (address.starts_with("[") && address.ends_with("]")) address = address.substr(1, address.size() - 2);
  if (address.empty() || port.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::make_pair(address, port);
}

// runc checks --status-fd before it uses it: an open descriptor, writable.
bool status_fd_writable(const std::string& value) {
  if (value.empty() || value.find_first_not_of("0123456789") != std::string::npos) return false;
  int flags = ::fcntl(std::atoi(value.c_str()), F_GETFL);
  return flags >= 0 && (flags & O_ACCMODE) != O_RDONLY;
}

}  // namespace

// What runc's checkpoint and restore share: the image and work paths made
// absolute (./checkpoint by default, the work path the image path's), and
// the flags both hand to the engine unchanged.
std::string absolute_path(const std::string& path) {
  if (path.starts_with("/")) return path;
  char cwd[PATH_MAX];
  if (!::getcwd(cwd, sizeof cwd)) return path;
  return std::string(cwd) + "/" + path;
}

// mkdir -p: runc makes the image and work directories it is given.
void make_dirs(const std::string& path) {
  for (size_t end = path.find('/', 1);; end = path.find('/', end + 1)) {
    ::mkdir(path.substr(0, end).c_str(), 0700);
    if (end == std::string::npos) return;
  }
}

std::string check_manage_cgroups_mode(const Args& args) {
  std::string mode = args.get_or("manage-cgroups-mode", "soft");
  if (mode != "soft" && mode != "full" && mode != "strict" && mode != "ignore") return "invalid manage cgroups mode";
  return "";
}

std::string check_empty_ns(const Args& args) {
  for (auto& ns : args.all("empty-ns"))
    if (ns != "network") return "namespace \"" + ns + "\" is not supported";
  return "";
}

void add_shared_flags(const Args& args, std::vector<std::string>& words) {
  for (const char* flag : {"tcp-established", "ext-unix-sk", "shell-job", "file-locks"})
    if (args.has(flag)) words.push_back(std::string("--") + flag);
}

int cmd_checkpoint(const GlobalOptions& g, const std::vector<std::string>& argv) {
  std::string error;
  auto args = parse(kCheckpointSpecs, argv, &error, true);
  if (!args) return oci::report_error("checkpoint: " + error);
  if (auto s = oci::setup_runtime_log(g.log, g.log_format, g.debug); !s.ok()) return oci::report_error(s.error().message());
  if (args->positional().size() != 1) return oci::report_error("checkpoint: give exactly one container id");
  const std::string& id = args->positional()[0];
  bool pre_dump_only = args->has("pre-dump");
  std::string parent = args->get_or("parent-path", "");
  if (parent.starts_with("/")) return oci::report_error("checkpoint: --parent-path must be relative");
  std::optional<std::pair<std::string, std::string>> page_server;
  if (auto ps = args->get("page-server")) {
    auto server = split_page_server(*ps);
    if (!server) return oci::report_error("checkpoint: Use --page-server ADDRESS:PORT to specify page server");
    page_server = std::move(server);
  }
  // --lazy-pages (runc's lazy migration): the container's memory stays in
  // its frozen tree, served at --page-server ADDRESS:PORT until the
  // destination's `cryo lazy-pages` has it all.
  bool lazy = args->has("lazy-pages");
  if (lazy && !page_server)
    return oci::report_error("checkpoint: --lazy-pages serves the memory at --page-server ADDRESS:PORT: give it");
  if (lazy && (pre_dump_only || args->has("export") || args->has("image-ref")))
    return oci::report_error(std::string("checkpoint: --lazy-pages keeps the memory with the container: not with ") +
                             (pre_dump_only ? "--pre-dump" : "--export or --image-ref"));
  if (auto fd = args->get("status-fd"); fd && !status_fd_writable(*fd))
    return oci::report_error("checkpoint: invalid --status-fd argument " + *fd + ": not an open, writable descriptor");
  if ((pre_dump_only || !parent.empty()) && (args->has("export") || args->has("image-ref")))
    return oci::report_error(std::string("checkpoint: --export and --image-ref take a whole checkpoint, not ") +
                             (pre_dump_only ? "a --pre-dump" : "one that keeps pages in its --parent-path"));
  if (auto e = check_manage_cgroups_mode(*args); !e.empty()) return oci::report_error("checkpoint: " + e);
  if (auto e = check_empty_ns(*args); !e.empty()) return oci::report_error("checkpoint: " + e);
  // --export / --image-ref: checked before the dump; without --image-path
  // the image directory is a scratch one, removed once packed.
  std::optional<oci::image::Destination> destination;
  if (args->has("export") || args->has("image-ref")) {
    auto d = oci::image::parse_destination(args->has("export") ? absolute_path(*args->get("export")) : "",
                                           args->get_or("image-ref", ""), args->get_or("compress", "zstd"),
                                           args->get_or("tls-verify", ""));
    if (!d.ok()) return oci::report_error("checkpoint: " + d.error().message());
    destination = std::move(*d);
  }
  std::string scratch;
  if (destination && !args->has("image-path")) {
    scratch = absolute_path(".cryo-checkpoint-" + std::to_string(::getpid()));
    if (::mkdir(scratch.c_str(), 0700) < 0) return oci::report_error("checkpoint: mkdir " + scratch + ": " + strerror(errno));
  }
  // A scratch image directory goes if the dump fails: it holds nothing to keep.
  ScopeGuard remove_scratch([&scratch] {
    std::error_code ec;
    if (!scratch.empty()) std::filesystem::remove_all(scratch, ec);
  });
  std::string image = scratch.empty() ? absolute_path(args->get_or("image-path", "checkpoint")) : scratch;
  std::string work = absolute_path(args->get_or("work-path", image));

  // runc: the parent, relative to the image path, must be a directory.
  if (!parent.empty()) {
    make_dirs(image);
    struct stat st;
    std::string real = image + "/" + parent;
    int err = ::stat(real.c_str(), &st) < 0 ? errno : (S_ISDIR(st.st_mode) ? 0 : ENOTDIR);
    if (err) return oci::report_error("checkpoint: invalid --parent-path: " + real + ": " + strerror(err));
  }
  auto container = oci::prepare_checkpoint(g.root, id, image, pre_dump_only);
  if (!container.ok()) return oci::report_error(container.error().message());
  make_dirs(work);
  std::vector<std::string> words = container->engine_words;
  words.insert(words.end(), {"-W", work, "-o", "dump.log", "-v4"});
  add_shared_flags(*args, words);
  if (args->has("leave-running")) words.push_back("--leave-running");
  if (!parent.empty()) words.insert(words.end(), {"--prev-images-dir", parent});
  if (page_server)
    words.insert(words.end(), {lazy ? "--lazy-pages" : "--page-server", "--address", page_server->first, "--port",
                               page_server->second});
  if (auto fd = args->get("status-fd"); fd && lazy) words.insert(words.end(), {"--status-fd", *fd});
  // A pre-dump takes the dump's options (as CRIU's does) and acts on those of memory.
  auto engine_args = criu::parse_command_line(criu::kDump, words, &error);
  if (!engine_args) return oci::report_error("checkpoint: " + error);
  DumpOptions options;
  if (int rc = dump_options(&*engine_args, options)) return rc;
  // Read before the dump: a namespace of the container's own goes with its tree.
  std::string network_status;
  if (destination && container->spec.find_namespace("network")) {
    auto status = oci::network_status_of(container->state.pid);
    if (status.ok())
      network_status = std::move(*status);
    else
      oci::log_warning("network.status: " + status.error().message());
  }
  catch_interrupts();  // Ctrl-C stops the dump at its next step; the container runs on
  // --pre-dump: the container's memory only, and it runs on (runc's state
  // stays running); a checkpoint with --parent-path then saves what changed.
  auto result = pre_dump_only ? pre_dump(options) : checkpoint(options);
  if (!result.ok()) return oci::report_error("checkpoint failed: " + result.error().message());
  remove_scratch.cancel();
  write_dump_stats(image, *result);
  if (work != image) write_dump_stats(work, *result);
  auto stats = oci::write_criu_dump_stats(work, {result->freeze_us, result->pages_bytes / 4096,
                                                 progress::us_of(result->phases, "freezing"),
                                                 progress::us_of(result->phases, "writing memory")});
  if (!stats.ok()) oci::log_warning("stats-dump: " + stats.error().message());
  if (pre_dump_only) return 0;
  oci::image::CheckpointSource source{image, container->state.bundle + "/config.json", id, container->spec.annotations};
  if (destination) {
    source.rootfs = container->spec.root_path;
    source.ignore_rootfs = args->has("ignore-rootfs");
    source.network_status = std::move(network_status);
  }
  if (auto s = oci::finish_checkpoint(std::move(*container), args->has("leave-running")); !s.ok())
    return oci::report_error("checkpoint: the image is written, but: " + s.error().message());
  if (!destination) return 0;
  if (auto s = oci::image::pack_checkpoint(*destination, source); !s.ok())
    return oci::report_error("checkpoint: the image is kept in " + image + ", but packing it failed: " + s.error().message());
  if (!scratch.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(scratch, ec);
  }
  return 0;
}

}  // namespace cryo::cli
