// Fuzz target: image::decode and decode_one, the framing of every message
// file (magic, version, kind, record lengths, checksum), then the parse of
// its message as ImageDirReader::read does it.
//
// Input: one control byte, then the bytes of a message file.
//   control & 0x07  the kind asked for (1-6; 0 and 7 are no kind at all)
//   control & 0x80  the harness writes the true checksum over the last 8
//                   bytes first, so that mutations get past it to the
//                   records and the message
#include <google/protobuf/stubs/logging.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/image/image.h"
#include "tests/fuzz/bundle.h"

using namespace cryo;

namespace {

constexpr uint8_t kKindMask = 0x07;
constexpr uint8_t kFixChecksum = 0x80;

void fix_checksum(std::string& bytes) {
  if (bytes.size() < 8) return;
  uint64_t sum = image::checksum(bytes.data(), bytes.size() - 8);
  for (size_t i = 0; i < 8; i++) bytes[bytes.size() - 8 + i] = static_cast<char>(sum >> (8 * i));
}

}  // namespace

// Protobuf logs every string field that is not UTF-8: thousands of lines.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return -1;  // no control byte: not worth keeping
  uint8_t control = data[0];
  auto kind = static_cast<image::Kind>(control & kKindMask);
  std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  if (control & kFixChecksum) fix_checksum(bytes);

  auto records = image::decode(kind, bytes);
  if (!records.ok()) return 0;
  // What decode hands out lies inside the file, whatever the lengths said.
  size_t total = 0;
  for (const auto& r : *records) total += r.size();
  if (total > bytes.size()) __builtin_trap();

  // A kind outside the enum was refused above; the page file holds no message.
  if (auto message = fuzz::new_message(kind)) (void)image::decode_one(kind, bytes, message.get());
  return 0;
}
