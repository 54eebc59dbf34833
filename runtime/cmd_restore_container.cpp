// runc's `restore [flags] ID`: a container made again from a checkpoint of
// `cryo checkpoint`, its tree restored by the engine into the state
// directory, cgroup and console that oci/checkpoint/ prepares.
#include <signal.h>
#include <sys/prctl.h>

#include <optional>

#include "core/restore.h"
#include "core/sys/progress.h"
#include "core/sys/interrupt.h"
#include "oci/checkpoint/checkpoint.h"
#include "oci/checkpoint/criu_stats.h"
#include "oci/container.h"
#include "oci/exec.h"
#include "oci/image/checkpoint_image.h"
#include "oci/image/rootfs_diff.h"
#include "oci/runtime_log.h"
#include "runtime/args.h"
#include "runtime/command.h"
#include "runtime/criu_options.h"
#include "runtime/process_options.h"

namespace cryo::cli {

std::string absolute_path(const std::string& path);
void make_dirs(const std::string& path);
std::string check_manage_cgroups_mode(const Args& args);
std::string check_empty_ns(const Args& args);
void add_shared_flags(const Args& args, std::vector<std::string>& words);

namespace {

const std::vector<OptionSpec> kRestoreSpecs = {
    {{"--console-socket"}, true},    {{"--image-path"}, true},     {{"--work-path"}, true},
    {{"--tcp-established"}, false},  {{"--ext-unix-sk"}, false},   {{"--shell-job"}, false},
    {{"--file-locks"}, false},       {{"--manage-cgroups-mode"}, true}, {{"-b", "--bundle"}, true},
    {{"-d", "--detach"}, false},     {{"--pid-file"}, true},       {{"--no-subreaper"}, false},
    {{"--no-pivot"}, false},         {{"--empty-ns"}, true, true}, {{"--auto-dedup"}, false},
    {{"--lazy-pages"}, false},       {{"--lsm-profile"}, true},    {{"--lsm-mount-context"}, true},
    {{"--import"}, true},            {{"--image-ref"}, true},      {{"--tls-verify"}, true},
    {{"--ignore-rootfs"}, false},
};

// runc (Go's flag package) says "flag needs an argument: -NAME"; Podman
// looks for those words to learn that a runtime restores pods.
std::string runc_error(const std::string& error) {
  size_t at = error.find(" needs a value");
  if (error.starts_with("option ") && at != std::string::npos)
    return "flag needs an argument: -" + error.substr(9, at - 9);
  return error;
}

}  // namespace

const char* const kRestoreContainerUsage =
    "usage: cryo [--root DIR] restore [--bundle DIR] [-d|--detach] [--pid-file FILE] [--console-socket SOCK]\n"
    "                    [--image-path DIR] [--work-path DIR] [--no-subreaper] [--no-pivot] [--tcp-established]\n"
    "                    [--ext-unix-sk] [--shell-job] [--file-locks] [--manage-cgroups-mode soft|full|strict]\n"
    "                    [--empty-ns network] [--auto-dedup] [--import FILE | --image-ref REF [--tls-verify=false]]\n"
    "                    [--ignore-rootfs] ID\n\n"
    "Restores container ID (runc's restore) from a checkpoint of `cryo checkpoint` (--image-path, ./checkpoint\n"
    "by default) into the bundle's rootfs and cgroup, its network namespace the bundle's; restore.log goes into\n"
    "--work-path. --import FILE (an archive of checkpoint --export) and --image-ref REF (oci:DIR[:TAG],\n"
    "oci-archive:FILE[:TAG], docker://HOST/NAME:TAG with --tls-verify, containers-storage:NAME) are\n"
    "unpacked and verified first, into a private directory; the rootfs changes they carry (rootfs-diff.tar,\n"
    "deleted.files) are applied over the bundle's rootfs first, unless --ignore-rootfs. Without -d waits\n"
    "for the container and exits with its status. --lazy-pages leaves the container's memory to `cryo\n"
    "lazy-pages -D IMAGE-PATH [--page-server ...]`, started first. --lsm-profile, --lsm-mount-context and\n"
    "--manage-cgroups-mode ignore are refused.\n";

bool is_container_restore(const std::vector<std::string>& argv) {
  std::string error;
  auto args = parse(kRestoreSpecs, argv, &error, true);
  if (args) return !args->positional().empty();
  // `restore --lsm-mount-context`: runc's words, which CRIU's parser rejects too.
  return error.find(" needs a value") != std::string::npos && !criu::parse_command_line(criu::kRestore, argv, &error);
}

int cmd_restore_container(const GlobalOptions& g, const std::vector<std::string>& argv) {
  std::string error;
  auto args = parse(kRestoreSpecs, argv, &error, true);
  if (!args) return oci::report_error(runc_error(error));
  if (auto s = oci::setup_runtime_log(g.log, g.log_format, g.debug); !s.ok()) return oci::report_error(s.error().message());
  if (g.systemd_cgroup) return oci::report_error("--systemd-cgroup is not supported by cryo; use cgroupfs paths");
  if (args->positional().size() != 1) return oci::report_error("restore: give exactly one container id");
  for (const char* lsm : {"lsm-profile", "lsm-mount-context"})
    if (!args->get_or(lsm, "").empty())
      return oci::report_error(std::string("restore: --") + lsm + " is not supported: cryo sets no AppArmor or SELinux label");
  if (auto e = check_manage_cgroups_mode(*args); !e.empty()) return oci::report_error("restore: " + e);
  std::string cgroups_mode = args->get_or("manage-cgroups-mode", "soft");
  if (cgroups_mode == "ignore")
    return oci::report_error("restore: --manage-cgroups-mode ignore is not supported: the container's processes "
                             "go back into its cgroup (soft, full or strict)");
  if (auto e = check_empty_ns(*args); !e.empty()) return oci::report_error("restore: " + e);
  oci::ContainerRestoreOptions o;
  o.root = g.root;
  o.id = args->positional()[0];
  o.bundle = args->get_or("bundle", ".");
  // --import FILE / --image-ref REF: unpacked (and verified) into a private
  // directory before anything of the container is made; removed at exit.
  std::optional<oci::image::UnpackedCheckpoint> unpacked;
  if (args->has("import") || args->has("image-ref")) {
    if (args->has("import") && args->has("image-ref")) return oci::report_error("restore: --import and --image-ref exclude each other");
    auto u = args->has("import") ? oci::image::import_checkpoint(*args->get("import"))
                                 : oci::image::pull_checkpoint(*args->get("image-ref"), args->get_or("tls-verify", ""));
    if (!u.ok()) return oci::report_error("restore: " + u.error().message());
    unpacked.emplace(std::move(*u));
  }
  o.image_dir = unpacked ? unpacked->image_dir() : absolute_path(args->get_or("image-path", "checkpoint"));
  o.pid_file = args->has("pid-file") ? absolute_path(args->get_or("pid-file", "")) : "";
  o.console_socket = args->get_or("console-socket", "");
  o.detach = args->has("detach");
  o.engine_makes_cgroups = cgroups_mode == "strict";
  std::string work = absolute_path(args->get_or("work-path", o.image_dir));

  auto pending = oci::prepare_restore(o);
  if (!pending.ok()) return oci::report_error("restore: " + pending.error().message());
  // As Podman's --import: what the container changed in its rootfs comes
  // back over the bundle's (a fresh copy of its base) before any process does.
  if (unpacked && !args->has("ignore-rootfs"))
    if (auto s = oci::image::apply_rootfs_diff(unpacked->files(), pending->spec().root_path); !s.ok())
      return oci::report_error("restore: " + s.error().message());
  make_dirs(work);
  std::vector<std::string> words = pending->engine_words();
  // The engine never waits: the runtime does, as `run` does, once the container is recorded.
  words.insert(words.end(), {"-W", work, "-o", "restore.log", "-v4", "-d",
                             "--manage-cgroups=" + cgroups_mode});
  add_shared_flags(*args, words);
  if (!args->all("empty-ns").empty()) words.insert(words.end(), {"--empty-ns", "net"});
  // The memory comes after the container runs, from `cryo lazy-pages` listening
  // on WORK/lazy-pages.socket (a lazy migration's: --page-server there).
  if (args->has("lazy-pages")) words.push_back("--lazy-pages");
  auto engine_args = criu::parse_command_line(criu::kRestore, words, &error);
  if (!engine_args) return oci::report_error("restore: " + error);
  RestoreOptions options;
  if (int rc = restore_options(&*engine_args, options)) return rc;
  oci::PendingRestore& container = *pending;
  options.actions.add_callback([&container](hooks::Action action, pid_t root) -> Status {
    if (action != hooks::Action::kSetupNamespaces) return {};
    return container.run_setup_hooks(root);
  });
  if (!o.detach && !args->has("no-subreaper")) ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  catch_interrupts();  // Ctrl-C stops the restore at its next step; what it made is removed
  auto result = restore(options);
  if (!result.ok()) {
    pending->abort();
    return oci::report_error("restore failed: " + result.error().message());
  }
  pending->close_handed_fds();
  if (auto s = oci::write_criu_restore_stats(work, {result->total_us, progress::us_of(result->phases, "creating processes")});
      !s.ok())
    oci::log_warning("stats-restore: " + s.error().message());
  if (auto s = pending->commit(result->root); !s.ok()) {
    ::kill(result->root, SIGKILL);
    pending->abort();
    return oci::report_error("restore: " + s.error().message());
  }
  if (o.detach) return 0;
  int code = oci::forward_and_wait(result->root);
  if (auto s = oci::delete_container(o.root, o.id, true); !s.ok()) oci::report_error(s.error().message());
  return code;
}

}  // namespace cryo::cli
