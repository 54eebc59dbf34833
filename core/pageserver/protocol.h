// cryo's page stream: what a dump says to a page server, and what a
// lazy-pages daemon asks of a dump serving its tree's memory.
//
// Every message is a frame: a 32-byte header and a payload.
//   u32 magic "CYPS" | u16 version | u16 type | u64 arg | u64 length |
//   u64 XXH3-64 of the header's first 24 bytes and of the payload
// (little-endian). A frame with a wrong magic, version or checksum, or a
// payload larger than kMaxPayload, ends the session with an error; so does a
// stream that stops inside a frame or before its last one.
//
// A session starts with kHello (arg: the role) answered by kOk or kError
// (payload: why). Store: kData (arg: offset of the payload in pages.img, in
// order) ... kFinish (arg: the file's size) answered by kOk once the server
// has it durably under its name. Lazy: kGet (arg: pid, payload: u64 address,
// u64 pages) answered by kPages (arg: address, payload: one byte a page, 1
// where data follows, then the pages that have data) ... kBye.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/pageserver/channel.h"

namespace cryo::pageserver {

constexpr uint16_t kProtocolVersion = 1;
constexpr uint64_t kMaxPayload = 16u << 20;

enum class FrameType : uint16_t {
  kHello = 1,
  kOk = 2,
  kError = 3,
  kData = 4,
  kFinish = 5,
  kGet = 6,
  kPages = 7,
  kBye = 8,
};
const char* frame_name(FrameType type);

enum class Role : uint64_t { kStore = 1, kLazy = 2 };

struct Frame {
  FrameType type{};
  uint64_t arg = 0;
  std::string payload;
};

Status send_frame(Channel& ch, FrameType type, uint64_t arg, const struct iovec* pieces, size_t count);
Status send_frame(Channel& ch, FrameType type, uint64_t arg, std::string_view payload = {});
// Reads one frame, checked. *eof is set (and nothing read) when the peer
// closed the stream between frames; with eof null that is an error too.
Status recv_frame(Channel& ch, Frame* out, bool* eof = nullptr);
// A frame of `want` type, or the error a kError frame carries.
Result<Frame> expect_frame(Channel& ch, FrameType want, const std::string& peer);

}  // namespace cryo::pageserver
