#include "core/ns/namespaces.h"

#include <fcntl.h>
#include <sched.h>

#include "core/sys/io.h"

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
