// Messages between the runtime and the processes it forks (a SOCK_SEQPACKET
// pair), and passing descriptors over unix sockets (console sockets).
#pragma once

#include <string>

#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::oci {

Result<std::pair<UniqueFd, UniqueFd>> sync_pair();
Status send_message(int fd, const std::string& message);
// An empty string means the other end closed.
Result<std::string> receive_message(int fd);
// Sends "error:<text>" (best effort; the child exits afterwards).
void send_error(int fd, const std::string& text);
// Waits for "go" (anything else is an error).
Status wait_go(int fd);

Status send_fd(int socket, int fd, const std::string& data);
Result<UniqueFd> receive_fd(int socket);
Result<UniqueFd> connect_unix(const std::string& path);

}  // namespace cryo::oci
