#include "core/hooks/actions.h"

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "core/sys/log.h"

namespace cryo::hooks {

std::string_view name(Action action) {
  switch (action) {
    case Action::kPreDump: return "pre-dump";
    case Action::kPostDump: return "post-dump";
    case Action::kPreRestore: return "pre-restore";
    case Action::kSetupNamespaces: return "setup-namespaces";
    case Action::kPostSetupNamespaces: return "post-setup-namespaces";
    case Action::kPostRestore: return "post-restore";
    case Action::kNetworkLock: return "network-lock";
    case Action::kNetworkUnlock: return "network-unlock";
    case Action::kPreResume: return "pre-resume";
    case Action::kPostResume: return "post-resume";
  }
  return "?";
}

namespace {

// Runs one script with the action's environment (made before fork: the
// child only execs); returns its wait status.
Result<int> run_one(const std::string& path, const std::vector<std::string>& env) {
  std::vector<char*> envp;
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  char* argv[] = {const_cast<char*>(path.c_str()), nullptr};
  pid_t pid = ::fork();
  if (pid < 0) return errno_error("fork for action script " + path);
  if (pid == 0) {
    ::execve(path.c_str(), argv, envp.data());
    ::_exit(127);
  }
  int status;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return errno_error("waiting for action script " + path);
  return status;
}

}  // namespace

void Actions::set_image_dir(const std::string& dir) {
  std::error_code ec;
  auto absolute = std::filesystem::absolute(dir, ec);
  image_dir_ = ec ? dir : absolute.lexically_normal().string();
  if (image_dir_.size() > 1 && image_dir_.back() == '/') image_dir_.pop_back();
}

Status Actions::run(Action action, pid_t root) const {
  if (scripts_.empty() && callbacks_.empty()) return {};
  // The caller's environment, with CRIU's three variables set anew.
  std::vector<std::string> env;
  for (char** e = environ; *e; e++) {
    std::string_view v(*e);
    if (!v.starts_with("CRTOOLS_SCRIPT_ACTION=") && !v.starts_with("CRTOOLS_IMAGE_DIR=") &&
        !v.starts_with("CRTOOLS_INIT_PID="))
      env.emplace_back(v);
  }
  env.push_back("CRTOOLS_SCRIPT_ACTION=" + std::string(name(action)));
  if (!image_dir_.empty()) env.push_back("CRTOOLS_IMAGE_DIR=" + image_dir_);
  if (root > 0) env.push_back("CRTOOLS_INIT_PID=" + std::to_string(root));
  Status first;
  for (const auto& path : scripts_) {
    log::debug("action " + std::string(name(action)) + ": " + path);
    auto status = run_one(path, env);
    Status st;
    if (!status.ok()) {
      st = std::move(status).error();
    } else if (WIFEXITED(*status) && WEXITSTATUS(*status) == 127) {
      st = Error(ENOENT, "action script " + path + " could not be run");
    } else if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
      st = Error("action script " + path + " failed at " + std::string(name(action)) + " (" +
                 (WIFEXITED(*status) ? "exit " + std::to_string(WEXITSTATUS(*status))
                                     : "signal " + std::to_string(WTERMSIG(*status))) +
                 ")");
    }
    if (!st.ok() && first.ok()) first = std::move(st);
  }
  for (const auto& callback : callbacks_) {
    if (!first.ok()) break;
    first = callback(action, root);
  }
  return first;
}

}  // namespace cryo::hooks
