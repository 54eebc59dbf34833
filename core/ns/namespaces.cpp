#include "core/ns/namespaces.h"

#include <fcntl.h>
#include <sched.h>

#include <cstring>

#include "core/sys/io.h"
#include "core/sys/log.h"
#include "core/sys/util.h"

namespace cryo::ns {

int clone_flag(const std::string& type) {
  if (type == "pid") return CLONE_NEWPID;
  if (type == "network") return CLONE_NEWNET;
  if (type == "mount") return CLONE_NEWNS;
  if (type == "ipc") return CLONE_NEWIPC;
  if (type == "uts") return CLONE_NEWUTS;
  if (type == "user") return CLONE_NEWUSER;
  if (type == "cgroup") return CLONE_NEWCGROUP;
  if (type == "time") return CLONE_NEWTIME;
  return 0;
}

std::string proc_name(const std::string& type) {
  if (type == "network") return "net";
  if (type == "mount") return "mnt";
  return type;
}

bool own_namespace(pid_t pid, const std::string& kind) {
  auto mine = read_link("/proc/self/ns/" + kind);
  auto theirs = read_link("/proc/" + std::to_string(pid) + "/ns/" + kind);
  return mine.ok() && theirs.ok() && *mine != *theirs;
}

namespace {

const char* kind_of(int flag) {
  switch (flag) {
    case CLONE_NEWNET: return "net";
    case CLONE_NEWUTS: return "uts";
    case CLONE_NEWIPC: return "ipc";
    case CLONE_NEWCGROUP: return "cgroup";
    case CLONE_NEWNS: return "mnt";
    case CLONE_NEWTIME: return "time";
  }
  return "?";
}

}  // namespace

Result<Scope> Scope::enter(int ns_fd, int flag) {
  Scope scope;
  scope.flag_ = flag;
  std::string kind = kind_of(flag);
  CRYO_ASSIGN(scope.back_, open_file("/proc/thread-self/ns/" + kind, O_RDONLY | O_CLOEXEC));
  if (::setns(ns_fd, flag) < 0) return errno_error("entering the tree's " + kind + " namespace");
  return scope;
}

Result<Scope> Scope::enter_of(pid_t pid, int flag) {
  std::string kind = kind_of(flag);
  CRYO_ASSIGN(UniqueFd target, open_file("/proc/" + std::to_string(pid) + "/ns/" + kind, O_RDONLY | O_CLOEXEC));
  return enter(target.get(), flag).wrap("the " + kind + " namespace of " + pid_str(pid));
}

Status Scope::leave() {
  if (!back_.valid()) return {};
  UniqueFd back = std::move(back_);
  if (::setns(back.get(), flag_) < 0)
    return errno_error("returning to cryo's " + std::string(kind_of(flag_)) + " namespace");
  return {};
}

Scope::~Scope() {
  if (auto st = leave(); !st.ok()) log::error(st.error().message());
}

Status join_fd(int fd, int flag, const std::string& what) {
  if (::setns(fd, flag) < 0) return errno_error("setns " + what);
  return {};
}

Status join(const std::string& path, int flag) {
  CRYO_ASSIGN(UniqueFd fd, open_file(path, O_RDONLY | O_CLOEXEC));
  return join_fd(fd.get(), flag, path);
}

std::string format_id_map(const std::vector<IdMap>& maps) {
  std::string out;
  for (auto& m : maps) out += std::to_string(m.inside) + " " + std::to_string(m.outside) + " " + std::to_string(m.count) + "\n";
  return out;
}

Status write_id_maps(pid_t pid, const std::vector<IdMap>& uids, const std::vector<IdMap>& gids) {
  std::string base = "/proc/" + std::to_string(pid) + "/";
  auto put = [&](const std::string& file, const std::string& text) -> Status {
    CRYO_ASSIGN(UniqueFd fd, open_file(base + file, O_WRONLY | O_CLOEXEC));
    return write_all(fd.get(), text).wrap("write " + base + file + " '" + text + "'");
  };
  if (!uids.empty()) CRYO_TRY(put("uid_map", format_id_map(uids)));
  if (!gids.empty()) CRYO_TRY(put("gid_map", format_id_map(gids)));
  return {};
}

}  // namespace cryo::ns
