#include "oci/checkpoint/criu_stats.h"

#include "core/sys/io.h"

namespace cryo::oci {
namespace {

constexpr uint32_t kServiceMagic = 0x55105940;  // CRIU's IMG_SERVICE_MAGIC
constexpr uint32_t kStatsMagic = 0x57093306;    // CRIU's STATS_MAGIC

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_field(std::string& out, uint32_t number, uint64_t value) {
  put_varint(out, uint64_t{number} << 3);  // wire type 0: varint
  put_varint(out, value);
}

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; i++) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// stats_entry { dump = 1 | restore = 2 } holding `inner`.
Status write_stats(const std::string& path, uint32_t which, const std::string& inner) {
  std::string entry;
  put_varint(entry, (uint64_t{which} << 3) | 2);  // wire type 2: a nested message
  put_varint(entry, inner.size());
  entry += inner;
  std::string file;
  put_u32(file, kServiceMagic);
  put_u32(file, kStatsMagic);
  put_u32(file, static_cast<uint32_t>(entry.size()));
  file += entry;
  return write_file_atomic(path, file);
}

uint32_t clamp32(uint64_t v) { return v > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(v); }

}  // namespace

Status write_criu_dump_stats(const std::string& work_dir, const CriuDumpStats& s) {
  // dump_stats_entry: freezing_time, frozen_time, memdump_time, memwrite_time
  // (µs), pages_scanned, pages_skipped_parent, pages_written, pages_lazy (required).
  std::string dump;
  put_field(dump, 1, clamp32(s.freezing_us));
  put_field(dump, 2, clamp32(s.frozen_us));
  put_field(dump, 3, clamp32(s.memdump_us));
  put_field(dump, 4, 0);
  put_field(dump, 5, s.pages_written);
  put_field(dump, 6, 0);
  put_field(dump, 7, s.pages_written);
  put_field(dump, 9, 0);  // pages_lazy: required too in go-criu's copy of the schema
  return write_stats(work_dir + "/stats-dump", 1, dump);
}

Status write_criu_restore_stats(const std::string& work_dir, const CriuRestoreStats& s) {
  // restore_stats_entry: pages_compared, pages_skipped_cow, forking_time,
  // restore_time (µs) (all required).
  std::string restore;
  put_field(restore, 1, 0);
  put_field(restore, 2, 0);
  put_field(restore, 3, clamp32(s.forking_us));
  put_field(restore, 4, clamp32(s.restore_us));
  return write_stats(work_dir + "/stats-restore", 2, restore);
}

}  // namespace cryo::oci
