// runc's `checkpoint` and `restore` of a container, over the engine (core/):
// this module reads the container's state and config.json and says what the
// engine must be told (CRIU's options: the tree's root, the freezer cgroup,
// what is external), keeps beside the image what the restore needs, and turns
// a restored tree into a container of the runtime again.
//
// The image directory holds, besides the engine's image:
//   descriptors.json  what fds 0, 1 and 2 of init were ("/dev/null",
//                     "pipe:[20175]", "/dev/pts/0"), as runc writes it
//   container.json    the keys of the external objects (binds of the
//                     bundle's config, a network namespace joined by path,
//                     the console)
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "core/cgroup/cgroup.h"
#include "core/sys/fd.h"
#include "core/sys/result.h"
#include "oci/config.h"
#include "oci/state.h"

namespace cryo::oci {

struct ContainerCheckpoint {
  std::string root;
  ContainerLock lock;  // held until the container is destroyed or left running
  ContainerState state;
  Spec spec;
  // CRIU's dump options for this container: -t, -D, --freeze-cgroup and the
  // --external keys of what config.json brings from outside.
  std::vector<std::string> engine_words;
};

// Checks that container ID is running or paused (runc's refusal otherwise),
// makes the image directory and writes descriptors.json and container.json
// there (not for a pre-dump, which holds the container's memory only).
Result<ContainerCheckpoint> prepare_checkpoint(const std::string& root, const std::string& id,
                                               const std::string& image_dir, bool pre_dump = false);
// After the image is safe: the container is destroyed (its state directory
// and cgroups removed, poststop hooks run), as runc does, unless left running.
Status finish_checkpoint(ContainerCheckpoint checkpoint, bool leave_running);

// A mount of config.json that binds a path from outside the container: its
// destination is its key in the image, its source is bound there on restore.
bool is_bind_mount(const Mount& m);

struct ContainerRestoreOptions {
  std::string root, id, bundle, image_dir, pid_file, console_socket;
  bool detach = false;
  // --manage-cgroups-mode strict: the engine makes the container's cgroups
  // itself, with the image's properties (and fails on one that exists).
  bool engine_makes_cgroups = false;
};

// A container being restored: its state directory (locked) and cgroup exist,
// the console's pty is open. Destroyed without commit(), it removes them.
class PendingRestore {
 public:
  PendingRestore() = default;
  PendingRestore(PendingRestore&& other) noexcept;
  PendingRestore& operator=(PendingRestore&&) = delete;
  ~PendingRestore();

  // CRIU's restore options for this container: -D, --root, --external
  // mnt[KEY]:SOURCE, --join-ns, --cgroup-root, --inherit-fd for the pipes of
  // descriptors.json and the console.
  const std::vector<std::string>& engine_words() const { return engine_words_; }
  // The bundle's config.json (its root_path absolute).
  const Spec& spec() const { return spec_; }
  // As runc at CRIU's setup-namespaces: the prestart and createRuntime hooks,
  // with the restored init's pid in the state (createContainer and
  // startContainer hooks are not run on restore, as with runc).
  Status run_setup_hooks(pid_t pid) const;
  // The tree runs: the container is `running` with init pid, the pid file
  // written, poststart hooks run.
  Status commit(pid_t pid);
  // The restore failed: the cgroup and the state directory go now.
  void abort();
  // The fds handed to the engine that the runtime must close once the tree runs.
  void close_handed_fds() { handed_.clear(); }

 private:
  friend Result<PendingRestore> prepare_restore(const ContainerRestoreOptions& options);
  ContainerRestoreOptions options_;
  std::optional<ContainerLock> lock_;
  std::optional<cgroup::Group> group_;
  Spec spec_;
  ContainerState state_;
  std::vector<UniqueFd> handed_;  // the console's slave
  std::vector<std::string> engine_words_;
  bool done_ = false;
};

// Checks the image and the bundle, makes the container's state directory
// (failing when ID exists) and cgroup, and a pty for a terminal container
// whose master goes to the console socket.
Result<PendingRestore> prepare_restore(const ContainerRestoreOptions& options);

}  // namespace cryo::oci
