// The tree's network namespace: its configuration (devices, addresses,
// routes, rules, sysctls, firewall: see core/ns/net/net_config.h) and the
// tree's sockets in it. The restore makes a new one, or joins one it is
// given (--join-ns net:PATH, or the fd --inherit-fd gives for the key of a
// namespace dumped as external); cryo makes the tree's sockets inside it and
// the tree's root joins it before forking the rest. TCP connections inside
// are locked inside (core/net/netlock.h).
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/files/external.h"
#include "core/image/proto/tree.pb.h"
#include "core/ns/net/options.h"
#include "core/ns/namespaces.h"
#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::ns {


// The state of pid's network namespace; refuses what it cannot make again.
Status dump_net_ns(pid_t pid, image::NetNs* out, const NetNsDumpOptions& options = {});


// The tree's network namespace as the image and the options say, held by
// the returned fd: the one given (--join-ns, or the --inherit-fd for an
// external one's key), else a new one made like the image's. first, if
// given, runs in it before any device comes up (the network lock).
Result<UniqueFd> make_net_ns(const image::NetNs& ns, const NetNsRestoreOptions& options,
                             const std::vector<files::InheritFd>& inherit_fds,
                             const std::function<Status()>& first = {});

// Once the tree's sockets are made in it, with the calling thread inside.
Status net_ns_sockets_made(const image::NetNs& ns, const NetNsRestoreOptions& options);

// The --inherit-fd options the files are given: not the namespace's.
std::vector<files::InheritFd> without_net_ns_key(const image::Tree& tree, const std::vector<files::InheritFd>& inherit_fds);

}  // namespace cryo::ns
