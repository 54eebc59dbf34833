// Linux namespaces: names, clone flags, joining by path, id maps.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::ns {

// The CLONE_NEW* flag of an OCI namespace type ("network" -> CLONE_NEWNET); 0 if unknown.
int clone_flag(const std::string& type);
// The /proc/PID/ns/ file name of a type ("network" -> "net", "mount" -> "mnt").
std::string proc_name(const std::string& type);

// Whether pid is in a namespace of that kind ("net", "mnt", "uts"...) other
// than cryo's; false when either cannot be read (a kind this kernel lacks,
// a task gone).
bool own_namespace(pid_t pid, const std::string& kind);

// The calling thread in another namespace until destroyed (back in the one
// it was in): what it reads or makes meanwhile is that namespace's.
class Scope {
 public:
  // flag: the namespace's CLONE_NEW* (net, uts, ipc, cgroup).
  static Result<Scope> enter(int ns_fd, int flag);
  // The same into the namespace of that kind of a process.
  static Result<Scope> enter_of(pid_t pid, int flag);
  Scope(Scope&&) noexcept = default;
  ~Scope();  // leaves, logging a failure
  // Back in the namespace it was in (once; later calls do nothing).
  Status leave();

 private:
  Scope() = default;
  UniqueFd back_;
  int flag_ = 0;
};

// Joins the namespace at path (setns), checking it is of the expected type.
Status join(const std::string& path, int flag);
Status join_fd(int fd, int flag, const std::string& what);

struct IdMap {
  uint32_t inside = 0, outside = 0, count = 0;
};
// "0 1000 65536\n..." as the kernel's uid_map wants it.
std::string format_id_map(const std::vector<IdMap>& maps);
// Writes uid_map, setgroups=deny when asked, and gid_map of pid.
Status write_id_maps(pid_t pid, const std::vector<IdMap>& uids, const std::vector<IdMap>& gids);

}  // namespace cryo::ns
