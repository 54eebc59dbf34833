// A packet socket's receive ring (PACKET_RX_RING): memory the kernel fills
// with frames and the process hands back frame by frame (TPACKET_V1/V2) or
// block by block (V3), each walking the ring in order. Neither says where the
// other is: the kernel keeps its next frame to itself, the process its own.
//
// The dump records the geometry, finds the kernel's next frame from the ring
// (after the frames still the process's; else after the newest by timestamp;
// V3: the block opened last, by sequence number) and keeps the frames the
// process has not handed back. The restore makes the ring, walks the kernel
// to that frame with frames of its own on lo, then writes the saved frames
// over them, so that the process's reading loop finds its next frame where it
// waits. A V3 block the kernel was still filling is not handed to the process
// yet: its packets are lost in flight.
#pragma once

#include <linux/packet_diag.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/image/proto/net.pb.h"
#include "core/sys/result.h"

namespace cryo::net {

// What the dump reads of a TPACKET_V1/V2 frame's header.
struct RingFrame {
  uint32_t status = 0;                 // tp_status
  bool filled = false;                 // the kernel ever put a frame there
  std::pair<uint64_t, uint64_t> time;  // seconds, nanoseconds
};

// The frame the kernel fills next. It fills frames in order and the process
// hands them back in order, so the frames still the process's are one run
// ending just before it; with none (or all, or a process that handed them
// back out of order), it follows the newest frame by its timestamp.
uint32_t next_frame(const std::vector<RingFrame>& frames);

// Bytes of the whole ring (what mmap of the socket must cover).
uint64_t ring_bytes(const image::PacketRing& ring);

// Reads the ring of packet socket s (cryo's copy of the task's fd `what`).
// running: whether the socket receives now.
Status describe_rx_ring(const std::string& what, int s, const packet_diag_ring& diag, bool running,
                        image::PacketRing* out);

// Gives socket s (PACKET_VERSION and the options before the ring set, not
// bound, no filter yet) its ring back as described. It leaves s bound to lo
// with a protocol nothing sends when it had to move the kernel's next frame:
// binding it as recorded follows.
Status restore_rx_ring(int s, const image::PacketRing& ring);

}  // namespace cryo::net
