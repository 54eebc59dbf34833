#include "core/net/packet_ring.h"

#include <linux/if_packet.h>

#include <doctest/doctest.h>

namespace cryo::net {
namespace {

// A ring of n frames: filled ones with increasing timestamps in the order
// `order` gives (index of the frame filled first, second, ...), the frames in
// `user` not handed back.
std::vector<RingFrame> ring(uint32_t n, const std::vector<uint32_t>& order, const std::vector<uint32_t>& user) {
  std::vector<RingFrame> frames(n);
  uint64_t t = 0;
  for (uint32_t i : order) {
    frames[i].filled = true;
    frames[i].time = {100 + t / 3, (t % 3) * 1000};
    t++;
  }
  for (uint32_t i : user) frames[i].status = TP_STATUS_USER;
  return frames;
}

TEST_CASE("next_frame: a ring never filled starts at frame 0") { CHECK(next_frame(ring(8, {}, {})) == 0); }

TEST_CASE("next_frame: after the run of frames not handed back") {
  CHECK(next_frame(ring(8, {0, 1, 2, 3, 4}, {3, 4})) == 5);
  // Round the end: 6, 7, 0 unread; 1.. hold older frames.
  CHECK(next_frame(ring(8, {1, 2, 3, 4, 5, 6, 7, 0}, {6, 7, 0})) == 1);
}

TEST_CASE("next_frame: every frame read: after the newest") {
  CHECK(next_frame(ring(8, {0, 1, 2}, {})) == 3);
  CHECK(next_frame(ring(8, {0, 1, 2, 3, 4, 5, 6, 7, 0, 1}, {})) == 2);
  CHECK(next_frame(ring(8, {0, 1, 2, 3, 4, 5, 6, 7}, {})) == 0);
}

TEST_CASE("next_frame: a full ring (the kernel waits at the oldest) or frames handed back out of order") {
  CHECK(next_frame(ring(4, {2, 3, 0, 1}, {0, 1, 2, 3})) == 2);
  CHECK(next_frame(ring(8, {0, 1, 2, 3, 4, 5}, {1, 4, 5})) == 6);
}

}  // namespace
}  // namespace cryo::net
