#include "runtime/criu_rpc/request.h"

#include <sched.h>
#include <sys/stat.h>

#include <cctype>

#include <google/protobuf/unknown_field_set.h>

namespace cryo::cli::criu_rpc {
namespace {

using cryo::criurpc::criu_opts;

// The words one field of the request stands for, kept with the field's name
// so that a refusal of the words can name the field.
struct Piece {
  std::string field;
  std::vector<std::string> words;
};

const char* cgroup_mode(cryo::criurpc::criu_cg_mode mode) {
  switch (mode) {
    case cryo::criurpc::IGNORE: return "ignore";
    case cryo::criurpc::CG_NONE: return "none";
    case cryo::criurpc::PROPS: return "props";
    case cryo::criurpc::SOFT: return "soft";
    case cryo::criurpc::FULL: return "full";
    case cryo::criurpc::STRICT: return "strict";
    case cryo::criurpc::DEFAULT: return "";
  }
  return "?";
}

Error field_error(const std::string& field, const std::string& why) { return Error("criu_opts." + field + ": " + why); }

// Every field of criu_opts but those the door answers itself.
Result<std::vector<Piece>> pieces_of(const criu_opts& o, criu::Verb verb, const FdPath& caller_fd) {
  std::vector<Piece> out;
  auto flag = [&](bool has, bool value, const char* field, const char* option) {
    if (has && value) out.push_back({field, {option}});  // false is CRIU's default for every flag
  };
  auto value = [&](bool has, const char* field, const char* option, const std::string& v) {
    if (has) out.push_back({field, {option, v}});
  };
  if (o.images_dir_fd() < 0) return field_error("images_dir_fd", "no image directory descriptor");
  CRYO_ASSIGN(std::string images, caller_fd(o.images_dir_fd()).wrap("criu_opts.images_dir_fd"));
  out.push_back({"images_dir_fd", {"--images-dir", images}});
  if (o.has_work_dir_fd()) {
    CRYO_ASSIGN(std::string work, caller_fd(o.work_dir_fd()).wrap("criu_opts.work_dir_fd"));
    out.push_back({"work_dir_fd", {"--work-dir", work}});
  }
  if (verb == criu::kDump || verb == criu::kPreDump) {
    // CRIU dumps its caller when no pid is given; cryo never dumps the
    // process that waits for its answer.
    if (!o.has_pid() || o.pid() <= 0) return field_error("pid", "name the tree's root: cryo does not dump its caller");
    out.push_back({"pid", {"--tree", std::to_string(o.pid())}});
  } else if (o.has_pid()) {
    return field_error("pid", "a restore takes no pid (its tree's pids are the image's)");
  }
  flag(o.has_leave_running(), o.leave_running(), "leave_running", "--leave-running");
  flag(o.has_ext_unix_sk(), o.ext_unix_sk(), "ext_unix_sk", "--ext-unix-sk");
  flag(o.has_tcp_established(), o.tcp_established(), "tcp_established", "--tcp-established");
  flag(o.has_evasive_devices(), o.evasive_devices(), "evasive_devices", "--evasive-devices");
  flag(o.has_shell_job(), o.shell_job(), "shell_job", "--shell-job");
  flag(o.has_file_locks(), o.file_locks(), "file_locks", "--file-locks");
  if (o.has_log_level()) out.push_back({"log_level", {"-v" + std::to_string(std::max(0, std::min(4, o.log_level())))}});
  if (o.has_log_file()) {
    if (o.log_file().find('/') != std::string::npos)
      return field_error("log_file", "a name in the work directory, without '/' (as in CRIU)");
    out.push_back({"log_file", {"--log-file", o.log_file()}});
  }
  // A lazy dump (runc's checkpoint --lazy-pages --page-server A:P) serves the
  // frozen tree's pages itself, at the page server's address and port.
  bool lazy_dump = verb == criu::kDump && o.has_lazy_pages() && o.lazy_pages();
  if (o.has_ps()) {  // the page server's address and port; CRIU's socket handed over is not taken
    if (o.ps().has_fd()) return field_error("ps", "a page server socket passed as ps.fd is not supported (give address and port)");
    std::vector<std::string> words;
    if (!lazy_dump) words.push_back("--page-server");
    if (o.ps().has_address()) words.insert(words.end(), {"--address", o.ps().address()});
    if (o.ps().has_port()) words.insert(words.end(), {"--port", std::to_string(o.ps().port())});
    out.push_back({"ps", words});
  }
  value(o.has_root(), "root", "--root", o.root());
  value(o.has_parent_img(), "parent_img", "--prev-images-dir", o.parent_img());
  flag(o.has_track_mem(), o.track_mem(), "track_mem", "--track-mem");
  flag(o.has_auto_dedup(), o.auto_dedup(), "auto_dedup", "--auto-dedup");
  flag(o.has_link_remap(), o.link_remap(), "link_remap", "--link-remap");
  for (const auto& v : o.veths()) out.push_back({"veths", {"--veth-pair", v.if_in() + "=" + v.if_out()}});
  // CRIU's default (every check) and 0 (none) are what cryo does: it checks no CPU capability.
  if (o.has_cpu_cap() && o.cpu_cap() != 0xffffffffu)
    out.push_back({"cpu_cap", {o.cpu_cap() == 0 ? "--cpu-cap=none" : "--cpu-cap=" + std::to_string(o.cpu_cap())}});
  flag(o.has_force_irmap(), o.force_irmap(), "force_irmap", "--force-irmap");
  if (o.exec_cmd_size() > 0) out.push_back({"exec_cmd", {"--exec-cmd"}});
  for (const auto& m : o.ext_mnt()) out.push_back({"ext_mnt", {"--external", "mnt[" + m.key() + "]:" + m.val()}});
  if (o.has_manage_cgroups_mode()) {
    std::string mode = cgroup_mode(o.manage_cgroups_mode());
    out.push_back({"manage_cgroups_mode", {mode.empty() ? "--manage-cgroups" : "--manage-cgroups=" + mode}});
  } else if (o.has_manage_cgroups() && o.manage_cgroups()) {
    out.push_back({"manage_cgroups", {"--manage-cgroups"}});
  }
  for (const auto& root : o.cg_root())
    out.push_back({"cg_root", {"--cgroup-root", root.ctrl().empty() ? root.path() : root.ctrl() + ":" + root.path()}});
  for (const auto& in : o.inherit_fd())
    out.push_back({"inherit_fd", {"--inherit-fd", "fd[" + std::to_string(in.fd()) + "]:" + in.key()}});
  if (o.has_auto_ext_mnt() && o.auto_ext_mnt()) out.push_back({"auto_ext_mnt", {"--ext-mount-map", "auto"}});
  flag(o.has_ext_sharing(), o.ext_sharing(), "ext_sharing", "--enable-external-sharing");
  flag(o.has_ext_masters(), o.ext_masters(), "ext_masters", "--enable-external-masters");
  for (const auto& m : o.skip_mnt()) out.push_back({"skip_mnt", {"--skip-mnt", m}});
  for (const auto& fs : o.enable_fs()) out.push_back({"enable_fs", {"--enable-fs", fs}});
  for (const auto& sk : o.unix_sk_ino()) out.push_back({"unix_sk_ino", {"--ext-unix-sk=" + std::to_string(sk.inode())}});
  if (o.has_ghost_limit()) out.push_back({"ghost_limit", {"--ghost-limit", std::to_string(o.ghost_limit())}});
  for (const auto& p : o.irmap_scan_paths()) out.push_back({"irmap_scan_paths", {"--irmap-scan-path", p}});
  for (const auto& e : o.external()) out.push_back({"external", {"--external", e}});
  if (o.has_empty_ns() && o.empty_ns() != 0) {
    if (o.empty_ns() != CLONE_NEWNET)
      return field_error("empty_ns", "only CLONE_NEWNET (an empty network namespace) is taken, as in CRIU");
    out.push_back({"empty_ns", {"--empty-ns", "net"}});
  }
  for (const auto& j : o.join_ns()) {
    if (j.has_extra_opt() && !j.extra_opt().empty())
      return field_error("join_ns", "extra_opt '" + j.extra_opt() + "' is not supported yet (it is for user namespaces)");
    out.push_back({"join_ns", {"--join-ns", j.ns() + ":" + j.ns_file()}});
  }
  value(o.has_cgroup_props(), "cgroup_props", "--cgroup-props", o.cgroup_props());
  value(o.has_cgroup_props_file(), "cgroup_props_file", "--cgroup-props-file", o.cgroup_props_file());
  for (const auto& c : o.cgroup_dump_controller()) out.push_back({"cgroup_dump_controller", {"--cgroup-dump-controller", c}});
  value(o.has_freeze_cgroup(), "freeze_cgroup", "--freeze-cgroup", o.freeze_cgroup());
  if (o.has_timeout() && o.timeout() > 0) out.push_back({"timeout", {"--timeout", std::to_string(o.timeout())}});
  flag(o.has_tcp_skip_in_flight(), o.tcp_skip_in_flight(), "tcp_skip_in_flight", "--skip-in-flight");
  flag(o.has_weak_sysctls(), o.weak_sysctls(), "weak_sysctls", "--weak-sysctls");
  flag(o.has_lazy_pages(), o.lazy_pages(), "lazy_pages", "--lazy-pages");
  // A dump's status fd is the caller's: the door itself writes its zero byte
  // (and notifies status-ready) once a lazy dump serves (swrk.cpp).
  if (o.has_status_fd() && verb != criu::kDump)
    out.push_back({"status_fd", {"--status-fd", std::to_string(o.status_fd())}});
  if (o.has_config_file()) {
    // runc names /etc/criu/runc.conf whether or not there is one; CRIU
    // reads the file only when it exists, and so does cryo.
    struct stat st;
    if (::stat(o.config_file().c_str(), &st) == 0) out.push_back({"config_file", {"--config", o.config_file()}});
  }
  flag(o.has_tcp_close(), o.tcp_close(), "tcp_close", "--tcp-close");
  value(o.has_lsm_profile(), "lsm_profile", "--lsm-profile", o.lsm_profile());
  value(o.has_tls_cacert(), "tls_cacert", "--tls-cacert", o.tls_cacert());
  value(o.has_tls_cacrl(), "tls_cacrl", "--tls-cacrl", o.tls_cacrl());
  value(o.has_tls_cert(), "tls_cert", "--tls-cert", o.tls_cert());
  value(o.has_tls_key(), "tls_key", "--tls-key", o.tls_key());
  flag(o.has_tls(), o.tls(), "tls", "--tls");
  flag(o.has_tls_no_cn_verify(), o.tls_no_cn_verify(), "tls_no_cn_verify", "--tls-no-cn-verify");
  value(o.has_cgroup_yard(), "cgroup_yard", "--cgroup-yard", o.cgroup_yard());
  if (o.has_pre_dump_mode())
    out.push_back({"pre_dump_mode", {"--pre-dump-mode", o.pre_dump_mode() == cryo::criurpc::VM_READ ? "read" : "splice"}});
  if (o.has_pidfd_store_sk())
    return field_error("pidfd_store_sk", "cryo keeps no pidfd store: it has no pre-dumps whose pids could be reused");
  value(o.has_lsm_mount_context(), "lsm_mount_context", "--lsm-mount-context", o.lsm_mount_context());
  if (o.has_network_lock())
    out.push_back({"network_lock", {"--network-lock", o.network_lock() == cryo::criurpc::NFTABLES ? "nftables" : "iptables"}});
  flag(o.has_mntns_compat_mode(), o.mntns_compat_mode(), "mntns_compat_mode", "--mntns-compat-mode");
  flag(o.has_skip_file_rwx_check(), o.skip_file_rwx_check(), "skip_file_rwx_check", "--skip-file-rwx-check");
  flag(o.has_unprivileged(), o.unprivileged(), "unprivileged", "--unprivileged");
  if (o.has_signal_process() && o.signal_process())
    return field_error("signal_process", "not supported yet");
  return out;
}

// Whether message names option as a whole word ("--tls" is not "--tls-key").
bool names_option(const std::string& message, const std::string& option) {
  for (size_t at = message.find(option); at != std::string::npos; at = message.find(option, at + 1)) {
    size_t end = at + option.size();
    if (end == message.size() || (!std::isalnum(static_cast<unsigned char>(message[end])) && message[end] != '-'))
      return true;
  }
  return false;
}

// The field whose words name the option an error message is about: one
// whose value the message quotes too, when several fields give the option
// (ext_mnt and external are both --external).
std::string field_named_in(const std::vector<Piece>& pieces, const std::string& message) {
  std::string by_option;
  for (const auto& p : pieces) {
    const std::string& first = p.words.front();
    if (!first.starts_with("-")) continue;
    std::string option = first.starts_with("-v") && !first.starts_with("--") ? "--verbosity" : first.substr(0, first.find('='));
    if (!names_option(message, option)) continue;
    std::string value = first.find('=') != std::string::npos ? first.substr(first.find('=') + 1)
                        : p.words.size() > 1                 ? p.words[1]
                                                             : "";
    if (!value.empty() && message.find(value) != std::string::npos) return p.field;
    if (by_option.empty()) by_option = p.field;
  }
  return by_option;
}

}  // namespace

Result<std::vector<std::string>> command_line(const criu_opts& opts, criu::Verb verb, const FdPath& caller_fd) {
  const auto& unknown = opts.GetReflection()->GetUnknownFields(opts);
  if (unknown.field_count() > 0)
    return Error("criu_opts field " + std::to_string(unknown.field(0).number()) +
                             " is not known to cryo (a newer CRIU's option): not supported yet");
  CRYO_ASSIGN(auto pieces, pieces_of(opts, verb, caller_fd));
  std::vector<std::string> argv;
  for (const auto& p : pieces) argv.insert(argv.end(), p.words.begin(), p.words.end());
  return argv;
}

Result<Args> parse_request(const criu_opts& opts, criu::Verb verb, const FdPath& caller_fd) {
  CRYO_ASSIGN(auto argv, command_line(opts, verb, caller_fd));
  std::string error;
  auto args = criu::parse_command_line(verb, argv, &error);
  if (args) return *args;
  auto pieces = pieces_of(opts, verb, caller_fd);
  std::string field = pieces.ok() ? field_named_in(*pieces, error) : "";
  return Error(field.empty() ? error : "criu_opts." + field + ": " + error);
}

}  // namespace cryo::cli::criu_rpc
