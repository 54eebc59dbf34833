#include <cstdio>

#include "core/features.h"
#include "core/net/netlock.h"
#include "runtime/command.h"

namespace cryo::cli {

int cmd_check(const GlobalOptions&, const std::vector<std::string>& argv) {
  if (!argv.empty() && argv[0] != "--all") return fail("check: unexpected argument " + argv[0]);
  bool ok = true;
  for (const auto& f : probe_features()) {
    printf("%-42s %s%s%s\n", f.name.c_str(), f.present ? "yes" : (f.required ? "MISSING" : "no"),
           f.detail.empty() ? "" : "  (", f.detail.empty() ? "" : (f.detail + ")").c_str());
    ok = ok && (f.present || !f.required);
  }
  // A dump leaves its lock for the restore; one whose restore never came
  // (or whose cryo died) stays until network-unlock drops it.
  auto locks = net::list_locks();
  if (locks.ok())
    for (const auto& name : *locks)
      printf("network lock left in place: %s (restore its image, or: cryo network-unlock -D DIR)\n", name.c_str());
  printf(ok ? "Looks good.\n" : "cryo cannot work on this system.\n");
  return ok ? 0 : 1;
}

}  // namespace cryo::cli
