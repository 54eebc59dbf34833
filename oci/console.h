// The container's terminal: a pty made inside the container, its master sent
// to the caller's console socket, its slave made the process's stdio.
#pragma once

#include "core/sys/result.h"

namespace cryo::oci {

// Opens /dev/ptmx (of the mount namespace we are in), sends the master over
// `socket`, and makes the slave our controlling terminal and fds 0-2.
// Needs setsid() first.
Status setup_console(int socket, unsigned rows, unsigned cols);

}  // namespace cryo::oci
