#include "core/tree/shared_tables.h"

#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "core/sys/log.h"
#include "core/sys/util.h"

namespace cryo::tree {
namespace {

// kcmp orders the objects: sorting by it brings the processes that share
// one next to each other (n log n comparisons, not n squared).
Status check_one(std::vector<pid_t> pids, int type, const char* what, const char* flag) {
  bool failed = false;
  auto less = [&](pid_t a, pid_t b) {
    long r = ::syscall(SYS_kcmp, a, b, type, 0, 0);
    failed = failed || r < 0;
    return r == 1;
  };
  std::sort(pids.begin(), pids.end(), less);
  if (failed) {
    log::info(std::string("kcmp cannot compare ") + what + ": not checked for sharing");
    return {};
  }
  for (size_t i = 1; i < pids.size(); i++)
    if (::syscall(SYS_kcmp, pids[i - 1], pids[i], type, 0, 0) == 0)
      return Error(pid_str(pids[i - 1]) + " and " + pid_str(pids[i]) + " share their " + what + " (clone with " + flag +
                   "): not supported yet");
  return {};
}

}  // namespace

Status check_shared_tables(const FrozenTree& tree) {
  std::vector<pid_t> pids;
  for (const auto& p : tree.processes())
    if (!p.zombie) pids.push_back(p.pid);
  if (pids.size() < 2) return {};
  CRYO_TRY(check_one(pids, KCMP_FILES, "fd table", "CLONE_FILES"));
  return check_one(pids, KCMP_FS, "cwd, root and umask", "CLONE_FS");
}

}  // namespace cryo::tree
