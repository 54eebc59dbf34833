// Action hooks: CRIU's --action-script. A caller's scripts run at named
// stages of a dump and a restore, with the stage in CRTOOLS_SCRIPT_ACTION,
// the image directory in CRTOOLS_IMAGE_DIR and, once the tree's root is
// known, its pid (as cryo sees it) in CRTOOLS_INIT_PID. A script that fails
// at a stage before the tree runs again fails the dump or restore (which
// undoes what it did, as any failure does); one that fails afterwards
// (post-resume) is reported only.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/sys/result.h"

namespace cryo::hooks {

enum class Action {
  kPreDump,
  kPostDump,
  kPreRestore,
  kSetupNamespaces,
  kPostSetupNamespaces,
  kPostRestore,
  kNetworkLock,
  kNetworkUnlock,
  kPreResume,
  kPostResume,
};

// CRIU's name of an action ("pre-dump", "setup-namespaces", ...).
std::string_view name(Action action);

class Actions {
 public:
  // Scripts run in the order they were given, each with its path as argv[0].
  void add_script(std::string path) { scripts_.push_back(std::move(path)); }
  void set_image_dir(const std::string& dir);  // made absolute
  // A function run after the scripts at every action (an OCI runtime runs
  // its prestart hooks at setup-namespaces); its failure fails the action.
  void add_callback(std::function<Status(Action, pid_t root)> fn) { callbacks_.push_back(std::move(fn)); }
  bool empty() const { return scripts_.empty() && callbacks_.empty(); }

  // Runs every script for the action; root: the tree's root, 0 if not known
  // yet. Fails naming the first script that failed (all still run).
  Status run(Action action, pid_t root = 0) const;

 private:
  std::vector<std::string> scripts_;
  std::vector<std::function<Status(Action, pid_t)>> callbacks_;
  std::string image_dir_;
};

}  // namespace cryo::hooks
