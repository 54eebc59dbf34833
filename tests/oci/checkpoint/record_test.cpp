// What a container checkpoint keeps beside the image: written and read back,
// a missing or hostile container.json refused with an error, never a crash;
// CRIU's statistics files laid out as go-criu reads them.
#include "oci/checkpoint/record.h"

#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

#include "core/sys/io.h"
#include "oci/checkpoint/criu_stats.h"
#include "tests/temp_dir.h"

using namespace cryo;
using namespace cryo::oci;

TEST_CASE("a container checkpoint record round-trips") {
  cryo::testing::TempDir dir("record-test");
  REQUIRE(write_file_atomic(dir.path + "/inventory.img", "x").ok());
  CheckpointRecord r;
  r.id = "c1";
  r.descriptors = {"/dev/null", "pipe:[20175]", "/dev/pts/0"};
  r.mounts = {"/etc/hosts", "/data"};
  r.network = kNetworkKey;
  r.console = "tty[8800:17]";
  r.cgroup = "/cryo-c1";
  REQUIRE(write_record(dir.path, r).ok());
  auto back = read_record(dir.path);
  REQUIRE(back.ok());
  CHECK(back->id == "c1");
  CHECK(back->descriptors == r.descriptors);
  CHECK(back->mounts == r.mounts);
  CHECK(back->network == "extRootNetNS");
  CHECK(back->console == r.console);
  CHECK(back->cgroup == "/cryo-c1");
  auto descriptors = read_file(dir.path + "/descriptors.json");
  REQUIRE(descriptors.ok());
  CHECK(*descriptors == R"(["/dev/null","pipe:[20175]","/dev/pts/0"])");  // runc's spelling
}

TEST_CASE("a directory without a container checkpoint is refused by name") {
  cryo::testing::TempDir dir("record-test");
  auto none = read_record(dir.path);
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().message().find("inventory.img") != std::string::npos);
  REQUIRE(write_file_atomic(dir.path + "/inventory.img", "x").ok());
  auto process_image = read_record(dir.path);
  REQUIRE_FALSE(process_image.ok());
  CHECK(process_image.error().message().find("cryo restore -D") != std::string::npos);
}

TEST_CASE("a hostile container.json is refused, not trusted") {
  cryo::testing::TempDir dir("record-test");
  REQUIRE(write_file_atomic(dir.path + "/inventory.img", "x").ok());
  for (const char* text : {"", "{", "[]", R"({"id": 5})", R"({"id": "c", "mounts": "x", "network": "", "console": ""})",
                           R"({"id": "c", "mounts": [], "network": "", "console": ""} trailing)"}) {
    REQUIRE(write_file_atomic(dir.path + "/container.json", text).ok());
    auto r = read_record(dir.path);
    CHECK_FALSE(r.ok());
  }
  REQUIRE(write_file_atomic(dir.path + "/container.json", R"({"id": "c", "mounts": [], "network": "", "console": ""})").ok());
  REQUIRE(write_file_atomic(dir.path + "/descriptors.json", R"({"0": 1})").ok());
  CHECK_FALSE(read_record(dir.path).ok());
}

TEST_CASE("stats-dump and stats-restore are CRIU's statistics images") {
  cryo::testing::TempDir dir("record-test");
  REQUIRE(write_criu_dump_stats(dir.path, {300, 2}).ok());
  auto dump = read_file(dir.path + "/stats-dump");
  REQUIRE(dump.ok());
  // IMG_SERVICE_MAGIC, STATS_MAGIC, the payload size, then stats_entry.dump (field 1, a message):
  // freezing_time 0, frozen_time 300 (varint ac 02), memdump 0, memwrite 0, pages_scanned 2,
  // pages_skipped_parent 0, pages_written 2, pages_lazy 0.
  const std::string payload("\x0a\x11\x08\x00\x10\xac\x02\x18\x00\x20\x00\x28\x02\x30\x00\x38\x02\x48\x00", 19);
  CHECK(*dump == std::string("\x40\x59\x10\x55\x06\x33\x09\x57\x13\x00\x00\x00", 12) + payload);
  REQUIRE(write_criu_restore_stats(dir.path, {5}).ok());
  auto restore = read_file(dir.path + "/stats-restore");
  REQUIRE(restore.ok());
  CHECK(restore->substr(8) == std::string("\x0a\x00\x00\x00\x12\x08\x08\x00\x10\x00\x18\x00\x20\x05", 14));
}
