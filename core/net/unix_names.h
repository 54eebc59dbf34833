// Filesystem names of unix sockets that are not simply "an absolute path
// whose socket file is there": names relative to the directory they were
// bound in, and names whose file was unlinked, replaced by another file, or
// whose directory was removed.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>

#include "core/image/proto/net.pb.h"
#include "core/sys/result.h"

namespace cryo::net {

// Whether a unix name is a filesystem path relative to a directory.
bool is_relative_unix_name(const std::string& name);

// The directory a relative name was bound in: the one where `name` leads to
// the socket file (kernel device `kdev`, inode `ino`), looked for in the
// working directory of pid and its ancestors, then below it.
Result<std::string> find_bound_dir(pid_t pid, const std::string& name, uint64_t kdev, uint64_t ino);

// The absolute path of a filesystem name of the image (its directory joined
// with a relative name); empty for abstract and unnamed sockets.
Result<std::string> unix_path(const image::SockAddr& a);

// Runs fn in the directory a relative name was bound in (bind() must be given
// the relative name, so that getsockname() reads the same), then goes back.
Status in_bound_dir(const image::SockAddr& a, const std::function<Status()>& fn);

// bind() to a name whose socket file was unlinked at dump time: the name is
// bound (its directories made, another file standing there moved aside),
// while_bound runs (connections through it are made then), then its file is
// unlinked and everything put back as it was.
Status bind_unlinked(int s, const image::SockAddr& a, const sockaddr* addr, socklen_t len,
                     const std::function<Status()>& while_bound);

// The tree's own mount namespace (an fd, not owned; -1: cryo's), where the
// restore binds and reaches unix sockets by their filesystem names. fsuid,
// fsgid: the ids new names are made with (a filesystem of a user namespace
// only takes ids it maps: its root's), then owned as the image says.
void set_unix_names_ns(int mount_ns, uid_t fsuid = 0, gid_t fsgid = 0);

// Runs fn where filesystem names are the tree's: in a child that joined the
// tree's mount namespace (the sockets it binds or connects are cryo's, shared
// by the fork), or right here if the tree shares cryo's. fn must keep nothing
// it makes: the child's memory and new fds are gone when it returns.
Status with_unix_names(const std::function<Status()>& fn);

}  // namespace cryo::net
