#include <cstdio>

#include "core/features.h"
#include "core/net/netlock.h"
#include "runtime/command.h"
#include "runtime/criu_options.h"
#include "runtime/process_options.h"

namespace cryo::cli {
namespace {

// `check --feature NAME`, CRIU's way of asking about one feature.
int check_one(const std::string& name) {
  if (name == "list") {
    for (const auto& f : criu::answered_features()) printf("%s\n", f.c_str());
    return 0;
  }
  auto probe = criu::probe_for_feature(name);
  if (!probe) {
    if (criu::is_criu_feature(name))
      return fail("check: cryo does not probe " + name + ": it does not rely on it (cryo check --feature list)");
    return fail("check: unknown feature " + name + " (cryo check --feature list)");
  }
  for (const auto& f : probe_features()) {
    if (f.name != *probe) continue;
    if (!f.present) return fail("check: " + name + " (" + f.name + ") is missing" + (f.detail.empty() ? "" : ": " + f.detail));
    printf("%s is supported\n", name.c_str());
    return 0;
  }
  return fail("check: " + name + ": cryo's probe '" + *probe + "' did not run");
}

}  // namespace

int cmd_check(const GlobalOptions&, const std::vector<std::string>& argv) {
  std::string error;
  auto args = criu::parse_command_line(criu::kCheck, argv, &error);
  if (!args) return fail(error);
  if (auto e = setup_logging(*args); !e.empty()) return fail("check: " + e);
  if (auto feature = args->get("feature")) return check_one(*feature);
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
    for (const auto& lock : *locks) {
      if (lock.maker_running)
        printf("network lock %s: in use by cryo pid %d\n", lock.name.c_str(), lock.maker);
      else
        printf("network lock left in place: %s, by cryo pid %d, which has exited (restore its image, or: cryo "
               "network-unlock -D DIR)\n",
               lock.name.c_str(), lock.maker);
    }
  printf(ok ? "Looks good.\n" : "cryo cannot work on this system.\n");
  return ok ? 0 : 1;
}

}  // namespace cryo::cli
