// Descriptors passed over unix sockets (SCM_RIGHTS) with a message, and whole
// messages over stream sockets, which may take or give them in parts; and
// descriptors taken from another process.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cstddef>
#include <span>
#include <vector>

#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo {

// The most descriptors one message of cryo's carries.
inline constexpr size_t kMaxPassedFds = 8;

// Sends `size` bytes with `fds` attached (none: a plain message), retrying
// EINTR. Returns the bytes sent: a stream socket may take fewer.
Result<size_t> send_with_fds(int sock, const void* data, size_t size, std::span<const int> fds,
                             int flags = MSG_NOSIGNAL);

struct Received {
  size_t bytes = 0;  // 0: end of file
  std::vector<UniqueFd> fds;  // close-on-exec
};

// Receives up to `size` bytes and the descriptors passed with them, retrying
// EINTR. More than kMaxPassedFds descriptors are refused (closed; EPROTO).
Result<Received> receive_with_fds(int sock, void* data, size_t size, int flags = 0);

// Sends all `size` bytes, going on after a short send, with `fds` attached to
// the first part; a peer gone is an error (`what`, with errno), never SIGPIPE.
Status send_all(int sock, const void* data, size_t size, const char* what, std::span<const int> fds = {});

// Receives exactly `size` bytes and the descriptors passed with any part of
// them, retrying EINTR. Fewer bytes only at end of file (0: before the first).
Result<Received> receive_all(int sock, void* data, size_t size);

// A copy of process pid's fd (pidfd_getfd), close-on-exec.
Result<UniqueFd> copy_fd(pid_t pid, int fd);

}  // namespace cryo
