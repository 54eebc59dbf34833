// Socket options beyond the basic list of socket_dump.cpp (SockExtra in
// net.proto): IP and IPv6 header fields, freebind and the bound device, the
// classic BPF filter and its lock, the buffer lock, raw and UDP-lite knobs.
// Each is stored only where it differs from a new socket of the same kind, so
// a restore sets what the program set and leaves kernel defaults alone.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "core/image/proto/files.pb.h"
#include "core/sys/result.h"

namespace cryo::net {

// What a new socket of each kind (family, type, protocol) reads for each
// option, asked of the kernel once per dump.
using OptionDefaults = std::map<std::tuple<int, int, int>, std::vector<std::optional<std::string>>>;

// Reads the options of socket s into sock->extra(). Fails on what cannot be
// read back: a filter attached as eBPF (SO_ATTACH_BPF).
Status dump_extra_options(int s, image::Socket* sock, OptionDefaults* defaults);

// The options that must be in place before bind (SO_BINDTODEVICE,
// IP_FREEBIND, IP_TRANSPARENT...).
Status apply_before_bind(int s, const image::Socket& sock);
// Everything else, the filter, then the buffer lock: after the buffer sizes.
Status apply_extra_options(int s, const image::Socket& sock);

// shutdown() as recorded; an unconnected datagram socket says ENOTCONN but
// keeps the shutdown.
Status apply_shutdown(int s, const image::Socket& sock);

}  // namespace cryo::net
