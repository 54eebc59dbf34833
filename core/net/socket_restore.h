// Recreating sockets: listeners bound and listening again, established TCP
// connections rebuilt in repair mode with their sequence numbers, windows,
// options and queued bytes.
#pragma once

#include <functional>
#include <map>

#include "core/image/proto/files.pb.h"
#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::net {

// The fd of a restored file by its image id (-1: none): the files a queued
// message carried in flight (SCM_RIGHTS) are sent along with it again.
using FileFds = std::function<int(uint32_t id)>;

// Every socket of files.img, by file id: created, bound, connected (unix
// pairs to each other), their queues refilled, then shut down as recorded.
// Only the sockets `wanted` accepts are made (both ends of a pair together).
Status open_sockets(const image::Files& files, const std::function<bool(uint32_t id)>& wanted,
                    const FileFds& file_fds, std::map<uint32_t, UniqueFd>* out);

// Pieces for a unix listener whose connections other processes made (each
// side is made by the process SO_PEERCRED must name, see tree/stubs).
Result<UniqueFd> unix_listen(const image::Socket& listener);
Result<UniqueFd> unix_connect(const image::Socket& client, const image::Socket& listener);
// Sends what `receiver` had queued, from its peer `from`.
Status send_queued(int from, const image::Socket& receiver, const FileFds& file_fds);
// Options, shutdown and file flags, once the queues are refilled.
Status finish_socket(int fd, const image::FileDesc& f);

// Established TCP connections are rebuilt in repair mode and stay in it
// until the restored tree is let go: whether f is one of them, and taking it
// out (then its unsent bytes go out).
bool repaired_on_restore(const image::FileDesc& f);
Status leave_repair(int fd, const image::Socket& sock);

}  // namespace cryo::net
