// A terminal for foreground `run` and `exec -t` when the caller gives no
// console socket: we listen on a private socket, take the pty master that the
// container sends, and copy between it and our own stdio until the process exits.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>

#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::oci {

class ConsoleListener {
 public:
  // Listens on a fresh socket in a private temp directory.
  static Result<ConsoleListener> open();
  ConsoleListener(ConsoleListener&& other) noexcept
      : dir_(std::exchange(other.dir_, {})), path_(std::exchange(other.path_, {})), socket_(std::move(other.socket_)) {}
  ~ConsoleListener();
  const std::string& path() const { return path_; }
  // The pty master the container sent (after create/exec made it).
  Result<UniqueFd> receive_master();

 private:
  ConsoleListener() = default;
  std::string dir_, path_;
  UniqueFd socket_;
};

// Copies stdin -> master and master -> stdout (stdin in raw mode when it is a
// terminal, window size kept in step), forwards signals, returns pid's exit code.
int proxy_and_wait(pid_t pid, int master);

}  // namespace cryo::oci
