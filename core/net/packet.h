// Packet sockets (AF_PACKET, SOCK_RAW and SOCK_DGRAM): the protocol and the
// interface they are bound to, their PACKET_* options, their memberships
// (multicast, promiscuous, all-multicast, unicast) and their fanout group.
// A receive ring (PACKET_RX_RING) comes back mapped where it was, with the
// frames not yet read (packet_ring.h). Frames queued without a ring, a
// PACKET_TX_RING and fanout groups that steer by a BPF program are refused.
#pragma once

#include <string>

#include "core/image/proto/files.pb.h"
#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::net {

// Describes packet socket s (a copy of the task's fd `what`) into sock.
Status describe_packet(const std::string& what, int s, image::Socket* sock);

// Restoring one takes two steps with the generic options (filter included)
// between them, so that no frame comes in before the filter is on:
// a socket that receives nothing yet, with its PACKET_* options...
Result<UniqueFd> new_packet_socket(const image::Socket& sock);
// ...then bound to its protocol and interface, its memberships and fanout.
Status start_packet_socket(int s, const image::Socket& sock);

}  // namespace cryo::net
