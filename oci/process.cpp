#include "oci/process.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "core/sys/io.h"
#include "oci/caps.h"

namespace cryo::oci {
namespace {

const std::map<std::string, int>& rlimit_table() {
  static const std::map<std::string, int> kTable = {
      {"RLIMIT_AS", RLIMIT_AS},           {"RLIMIT_CORE", RLIMIT_CORE},         {"RLIMIT_CPU", RLIMIT_CPU},
      {"RLIMIT_DATA", RLIMIT_DATA},       {"RLIMIT_FSIZE", RLIMIT_FSIZE},       {"RLIMIT_LOCKS", RLIMIT_LOCKS},
      {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK}, {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE}, {"RLIMIT_NICE", RLIMIT_NICE},
      {"RLIMIT_NOFILE", RLIMIT_NOFILE},   {"RLIMIT_NPROC", RLIMIT_NPROC},       {"RLIMIT_RSS", RLIMIT_RSS},
      {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},   {"RLIMIT_RTTIME", RLIMIT_RTTIME},     {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
      {"RLIMIT_STACK", RLIMIT_STACK}};
  return kTable;
}

std::string env_value(const std::vector<std::string>& env, const std::string& key) {
  for (auto& e : env)
    if (e.starts_with(key + "=")) return e.substr(key.size() + 1);
  return "";
}

// Marks every fd from `first` on close-on-exec so the container gets only its own.
void close_fds_on_exec(int first) {
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return;
  int self = ::dirfd(d);
  while (struct dirent* e = ::readdir(d)) {
    int fd = atoi(e->d_name);
    if (e->d_name[0] == '.' || fd < first || fd == self) continue;
    int flags = ::fcntl(fd, F_GETFD);
    if (flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  }
  ::closedir(d);
}

}  // namespace

int rlimit_number(const std::string& name) {
  auto it = rlimit_table().find(name);
  return it == rlimit_table().end() ? -1 : it->second;
}

Status apply_rlimits(const std::vector<Rlimit>& rlimits) {
  for (auto& r : rlimits) {
    int resource = rlimit_number(r.type);
    if (resource < 0) return Error(EINVAL, "unknown rlimit type '" + r.type + "'");
    struct rlimit limit = {r.soft, r.hard};
    if (::setrlimit(resource, &limit) < 0) {
      int err = errno;
      struct rlimit current {};
      ::getrlimit(resource, &current);
      std::string message = "setting " + r.type + " to soft " + std::to_string(r.soft) + " hard " +
                            std::to_string(r.hard);
      if (err == EPERM && r.hard > current.rlim_max)
        message += " (above the current hard limit " + std::to_string(current.rlim_max) +
                   "; raising it needs CAP_SYS_RESOURCE, which this runtime does not have)";
      return Error(err, message);
    }
  }
  return {};
}

Status set_oom_score_adj(int value) {
  CRYO_ASSIGN(UniqueFd fd, open_file("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC));
  auto written = write_all(fd.get(), std::to_string(value));
  if (!written.ok() && written.error().code() == EACCES)
    return Error(EACCES, "setting oomScoreAdj " + std::to_string(value) +
                             ": lowering it needs CAP_SYS_RESOURCE, which this runtime does not have");
  return std::move(written).wrap("setting oomScoreAdj " + std::to_string(value));
}

Result<std::string> find_executable(const std::string& name, const std::vector<std::string>& env) {
  if (name.empty()) return Error(EINVAL, "process.args is empty");
  if (name.find('/') != std::string::npos) {
    // A path is not looked up, but must still be there (runc refuses it at create too).
    struct stat st;
    if (::stat(name.c_str(), &st) < 0) return errno_error("executable " + name);
    if (!S_ISREG(st.st_mode) || ::access(name.c_str(), X_OK) < 0) return Error(EACCES, "executable " + name + " is not an executable file");
    return name;
  }
  std::string path = env_value(env, "PATH");
  if (path.empty()) path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
    start = end + 1;
  }
  return Error(ENOENT, "executable file '" + name + "' not found in $PATH");
}

std::string home_of(const std::string& passwd, uid_t uid) {
  size_t start = 0;
  while (start < passwd.size()) {
    size_t end = passwd.find('\n', start);
    if (end == std::string::npos) end = passwd.size();
    std::vector<std::string> fields;
    for (size_t pos = start;;) {
      size_t colon = passwd.find(':', pos);
      if (colon == std::string::npos || colon > end) colon = end;
      fields.push_back(passwd.substr(pos, colon - pos));
      if (colon == end) break;
      pos = colon + 1;
    }
    if (fields.size() >= 6 && fields[2] == std::to_string(uid) && !fields[5].empty()) return fields[5];
    start = end + 1;
  }
  return "/";
}

Status exec_process(const ExecPlan& plan) {
  const Process& p = plan.process;
  if (p.args.empty()) return Error(EINVAL, "process.args must not be empty");
  if (!plan.personality.empty()) {
    unsigned long persona = plan.personality == "LINUX32" ? PER_LINUX32 : PER_LINUX;
    if (::personality(persona) < 0) return errno_error("personality " + plan.personality);
  }
  if (p.scheduler) CRYO_TRY(apply_scheduler(*p.scheduler));
  if (p.io_priority) CRYO_TRY(apply_io_priority(*p.io_priority));
  if (p.no_new_privileges && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return errno_error("PR_SET_NO_NEW_PRIVS");
  // Without no_new_privs loading a filter needs CAP_SYS_ADMIN: load it before dropping capabilities.
  if (plan.seccomp && !p.no_new_privileges) CRYO_TRY(seccomp::load(*plan.seccomp));
  CRYO_TRY(apply_user_and_capabilities(p.user, p.capabilities, plan.in_user_ns));
  if (p.user.umask) ::umask(*p.user.umask);
  if (::chdir(p.cwd.c_str()) < 0) return errno_error("chdir to cwd " + p.cwd);
  CRYO_ASSIGN(std::string path, find_executable(p.args[0], p.env));
  close_fds_on_exec(3 + plan.preserve_fds);
  std::vector<char*> argv, envp;
  for (auto& a : p.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (auto& e : p.env) envp.push_back(const_cast<char*>(e.c_str()));
  std::string home;
  if (std::none_of(p.env.begin(), p.env.end(), [](const std::string& e) { return e.starts_with("HOME="); })) {
    auto passwd = read_file("/etc/passwd");
    home = "HOME=" + home_of(passwd.ok() ? *passwd : "", p.user.uid);
    envp.push_back(home.data());
  }
  envp.push_back(nullptr);
  if (!p.exec_cpu_affinity_final.empty()) CRYO_TRY(set_cpu_affinity(p.exec_cpu_affinity_final));
  // As late as possible: only execve runs under the filter from here.
  if (plan.seccomp && p.no_new_privileges) CRYO_TRY(seccomp::load(*plan.seccomp));
  ::execve(path.c_str(), argv.data(), envp.data());
  return errno_error("exec " + path);
}

}  // namespace cryo::oci
