// cryo as CRIU's RPC service: `criu swrk FD` (how runc and Podman's go-criu
// drive CRIU). FD is one end of a SOCK_SEQPACKET socketpair whose other end
// the caller keeps; each message is one criu_req or criu_resp
// (runtime/criu_rpc/criu_rpc.proto). Requests are served one after the
// other until the caller closes its end.
#pragma once

namespace cryo::cli::criu_rpc {

// The version cryo gives as CRIU's: what runc and Podman check for. Every
// option of that CRIU release is either honoured or refused by name.
inline constexpr int kCriuMajor = 3;
inline constexpr int kCriuMinor = 19;

// Serves the requests on fd; returns the exit code (0 when the last request
// succeeded, as CRIU's swrk does).
int serve(int fd);

}  // namespace cryo::cli::criu_rpc
