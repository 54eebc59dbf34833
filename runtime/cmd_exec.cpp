#include "core/sys/io.h"
#include "oci/container.h"
#include "oci/exec.h"
#include "oci/runtime_log.h"
#include "runtime/args.h"
#include "runtime/command.h"

namespace cryo::cli {
namespace {

bool parse_id(const std::string& text, uint32_t* out) {
  if (text.empty() || text.size() > 10 || text.find_first_not_of("0123456789") != std::string::npos) return false;
  *out = static_cast<uint32_t>(std::stoul(text));
  return true;
}

// The process runc's exec would run: the container's own process with the flags' changes.
Result<oci::Process> process_from_flags(const oci::Process& base, const Args& args) {
  oci::Process p = base;
  p.args.assign(args.positional().begin() + 1, args.positional().end());
  if (p.args.empty()) return Error(EINVAL, "exec: give the command to run (cryo exec ID COMMAND [ARGS])");
  p.terminal = args.has("tty");
  if (auto cwd = args.get("cwd")) p.cwd = *cwd;
  for (auto& e : args.all("env")) {
    std::string key = e.substr(0, e.find('='));
    std::erase_if(p.env, [&](const std::string& have) { return have.substr(0, have.find('=')) == key; });
    p.env.push_back(e);
  }
  if (auto user = args.get("user")) {
    size_t colon = user->find(':');
    uint32_t uid = 0, gid = 0;
    if (!parse_id(user->substr(0, colon), &uid) || (colon != std::string::npos && !parse_id(user->substr(colon + 1), &gid)))
      return Error(EINVAL, "exec: --user must be UID[:GID] in numbers, not '" + *user + "'");
    p.user.uid = uid;
    p.user.gid = gid;
  }
  for (auto& g : args.all("additional-gids")) {
    uint32_t gid = 0;
    if (!parse_id(g, &gid)) return Error(EINVAL, "exec: bad --additional-gids '" + g + "'");
    p.user.additional_gids.push_back(gid);
  }
  for (auto& cap : args.all("cap")) {
    if (!p.capabilities) p.capabilities = oci::Capabilities{};
    for (auto* set : {&p.capabilities->bounding, &p.capabilities->effective, &p.capabilities->permitted})
      set->push_back(cap);
  }
  if (args.has("no-new-privs")) p.no_new_privileges = true;
  return p;
}

}  // namespace

int cmd_exec(const GlobalOptions& g, const std::vector<std::string>& argv) {
  static const std::vector<OptionSpec> kSpecs = {
      {{"--console-socket"}, true}, {{"--cwd"}, true},   {{"-e", "--env"}, true, true}, {{"-t", "--tty"}, false},
      {{"-u", "--user"}, true},     {{"-g", "--additional-gids"}, true, true}, {{"-p", "--process"}, true},
      {{"-d", "--detach"}, false},  {{"--pid-file"}, true}, {{"--process-label"}, true}, {{"--apparmor"}, true},
      {{"--no-new-privs"}, false},  {{"-c", "--cap"}, true, true}, {{"--preserve-fds"}, true},
      {{"--ignore-paused"}, false}, {{"--cgroup"}, true}};
  std::string error;
  auto args = parse(kSpecs, argv, &error, true);
  if (!args) return oci::report_error("exec: " + error);
  if (auto s = oci::setup_runtime_log(g.log, g.log_format, g.debug); !s.ok()) return oci::report_error(s.error().message());
  if (args->positional().empty()) return oci::report_error("exec: give a container id");
  if (args->has("process-label") || args->has("apparmor"))
    return oci::report_error("exec: --process-label and --apparmor are not supported by cryo");
  if (args->has("cgroup")) return oci::report_error("exec: --cgroup is not supported by cryo");
  oci::ExecOptions options;
  options.root = g.root;
  options.id = args->positional()[0];
  options.detach = args->has("detach");
  options.pid_file = args->get_or("pid-file", "");
  options.console_socket = args->get_or("console-socket", "");
  std::string preserve = args->get_or("preserve-fds", "0");
  if (preserve.empty() || preserve.find_first_not_of("0123456789") != std::string::npos || preserve.size() > 6)
    return oci::report_error("exec: --preserve-fds must be a number");
  options.preserve_fds = std::stoi(preserve);
  if (auto file = args->get("process")) {
    auto text = read_file(*file);
    if (!text.ok()) return oci::report_error("exec --process: " + text.error().message());
    auto process = oci::parse_process(*text);
    if (!process.ok()) return oci::report_error("exec --process " + *file + ": " + process.error().message());
    options.process = *process;
  } else {
    auto spec = oci::load_container_spec(g.root, options.id);
    if (!spec.ok()) return oci::report_error(spec.error().message());
    auto process = process_from_flags(spec->process, *args);
    if (!process.ok()) return oci::report_error(process.error().message());
    options.process = *process;
  }
  auto code = oci::exec_in_container(options);
  if (!code.ok()) return oci::report_error(code.error().message());
  return *code;
}

}  // namespace cryo::cli
