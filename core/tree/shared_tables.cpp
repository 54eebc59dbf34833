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

long kcmp(pid_t a, pid_t b, int type) { return ::syscall(SYS_kcmp, a, b, type, 0, 0); }

// kcmp orders the objects: sorting by it brings the processes that share
// one next to each other (n log n comparisons, not n squared). Within each
// run of sharers every one but the first-cloned must have its parent in the
// run too: then each is cloned from its parent with `flag` again.
Status find_one(const FrozenTree& tree, std::vector<pid_t> pids, int type, const char* what, const char* flag,
                std::set<pid_t>* of_parent) {
  bool failed = false;
  std::sort(pids.begin(), pids.end(), [&](pid_t a, pid_t b) {
    long r = kcmp(a, b, type);
    failed = failed || r < 0;
    return r == 1;
  });
  if (failed) {
    log::info(std::string("kcmp cannot compare ") + what + ": not checked for sharing");
    return {};
  }
  for (size_t begin = 0, end; begin < pids.size(); begin = end) {
    for (end = begin + 1; end < pids.size() && kcmp(pids[begin], pids[end], type) == 0; end++) {
    }
    std::vector<pid_t> tops;  // sharers whose parent is not one
    for (size_t i = begin; i < end; i++) {
      pid_t parent = tree.find(pids[i])->stat.ppid;
      bool parent_shares = std::find(pids.begin() + begin, pids.begin() + end, parent) != pids.begin() + end;
      if (parent_shares) of_parent->insert(pids[i]);
      else tops.push_back(pids[i]);
    }
    if (tops.size() > 1)
      return Error(pid_str(tops[0]) + " and " + pid_str(tops[1]) + " share their " + what + " (clone with " + flag +
                   "), which their parents do not (not supported: cryo clones a sharer from its parent)");
  }
  return {};
}

}  // namespace

Result<SharedTables> find_shared_tables(const FrozenTree& tree) {
  std::vector<pid_t> pids;
  for (const auto& p : tree.processes())
    if (!p.zombie) pids.push_back(p.pid);
  SharedTables shared;
  CRYO_TRY(find_one(tree, pids, KCMP_FILES, "fd table", "CLONE_FILES", &shared.files_of_parent));
  CRYO_TRY(find_one(tree, pids, KCMP_FS, "cwd, root and umask", "CLONE_FS", &shared.fs_of_parent));
  return shared;
}

}  // namespace cryo::tree
