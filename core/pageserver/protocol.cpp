#include "core/pageserver/protocol.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

#include <cstring>

namespace cryo::pageserver {
namespace {

constexpr uint32_t kMagic = 0x53505943;  // "CYPS"
constexpr size_t kHeaderSize = 32;

void put(uint8_t* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t get(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

}  // namespace

const char* frame_name(FrameType type) {
  switch (type) {
    case FrameType::kHello: return "hello";
    case FrameType::kOk: return "ok";
    case FrameType::kError: return "error";
    case FrameType::kData: return "data";
    case FrameType::kFinish: return "finish";
    case FrameType::kGet: return "get";
    case FrameType::kPages: return "pages";
    case FrameType::kBye: return "bye";
  }
  return "unknown";
}

Status send_frame(Channel& ch, FrameType type, uint64_t arg, const struct iovec* pieces, size_t count) {
  uint64_t length = 0;
  for (size_t i = 0; i < count; i++) length += pieces[i].iov_len;
  if (length > kMaxPayload) return Error(EMSGSIZE, "a frame of " + std::to_string(length) + " bytes is too large");
  uint8_t header[kHeaderSize];
  put(header, kMagic, 4);
  put(header + 4, kProtocolVersion, 2);
  put(header + 6, static_cast<uint16_t>(type), 2);
  put(header + 8, arg, 8);
  put(header + 16, length, 8);
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, header, 24);
  for (size_t i = 0; i < count; i++) XXH3_64bits_update(&state, pieces[i].iov_base, pieces[i].iov_len);
  put(header + 24, XXH3_64bits_digest(&state), 8);
  std::vector<struct iovec> all;
  all.reserve(count + 1);
  all.push_back({header, kHeaderSize});
  all.insert(all.end(), pieces, pieces + count);
  return ch.send(all.data(), all.size());
}

Status send_frame(Channel& ch, FrameType type, uint64_t arg, std::string_view payload) {
  struct iovec piece = {const_cast<char*>(payload.data()), payload.size()};
  return send_frame(ch, type, arg, &piece, payload.empty() ? 0 : 1);
}

Status recv_frame(Channel& ch, Frame* out, bool* eof) {
  uint8_t header[kHeaderSize];
  bool closed = false;
  CRYO_TRY(ch.recv_or_eof(header, kHeaderSize, &closed));
  if (closed) {
    if (eof) {
      *eof = true;
      return {};
    }
    return Error(ECONNRESET, "the peer closed the connection before the end of the session (a truncated stream)");
  }
  if (eof) *eof = false;
  if (get(header, 4) != kMagic) return Error(EPROTO, "not a cryo page stream (bad frame magic)");
  uint64_t version = get(header + 4, 2);
  if (version != kProtocolVersion)
    return Error(EPROTO, "page stream protocol version " + std::to_string(version) + " is not supported (this cryo speaks " +
                             std::to_string(kProtocolVersion) + ")");
  uint64_t length = get(header + 16, 8);
  if (length > kMaxPayload)
    return Error(EPROTO, "a frame announces " + std::to_string(length) + " bytes, more than any frame holds");
  out->type = static_cast<FrameType>(get(header + 6, 2));
  out->arg = get(header + 8, 8);
  out->payload.resize(length);
  CRYO_TRY(ch.recv(out->payload.data(), length));
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, header, 24);
  XXH3_64bits_update(&state, out->payload.data(), length);
  if (XXH3_64bits_digest(&state) != get(header + 24, 8))
    return Error(EPROTO, std::string("checksum mismatch in a ") + frame_name(out->type) + " frame (a corrupt stream)");
  return {};
}

Result<Frame> expect_frame(Channel& ch, FrameType want, const std::string& peer) {
  Frame f;
  CRYO_TRY(recv_frame(ch, &f).wrap(peer));
  if (f.type == FrameType::kError) return Error(EPROTO, peer + " says: " + f.payload);
  if (f.type != want)
    return Error(EPROTO, peer + " sent a " + std::string(frame_name(f.type)) + " frame where a " + frame_name(want) +
                             " frame belongs");
  return f;
}

}  // namespace cryo::pageserver
