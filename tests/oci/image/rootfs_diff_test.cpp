// The rootfs diff's pure parts: what is not an overlay has no diff, and a
// deleted.files that could reach outside the rootfs is refused before any
// process or file is touched. Real files in a temp dir, no mocks.
#include "oci/image/rootfs_diff.h"
#include "tests/temp_dir.h"

#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace img = cryo::oci::image;

namespace {

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

}  // namespace

TEST_CASE("a rootfs that is not an overlay has no diff") {
  cryo::testing::TempDir rootfs("rootfs-diff-test"), out("rootfs-diff-test");
  auto layers = img::overlay_at(rootfs.path);
  REQUIRE(layers.ok());
  CHECK(!layers->has_value());
  auto written = img::write_rootfs_diff(rootfs.path, out.path);
  REQUIRE(written.ok());
  CHECK(written->empty());
  CHECK(std::filesystem::is_empty(out.path));
}

TEST_CASE("nothing to apply is no error") {
  cryo::testing::TempDir files("rootfs-diff-test"), rootfs("rootfs-diff-test");
  CHECK(img::apply_rootfs_diff(files.path, rootfs.path).ok());
}

TEST_CASE("deleted.files that could leave the rootfs is refused, naming the entry") {
  cryo::testing::TempDir files("rootfs-diff-test"), rootfs("rootfs-diff-test");
  write(rootfs.path + "/keep", "keep");
  struct Case {
    const char* text;
    const char* reason;
  } cases[] = {
      {R"(["/../keep"])", "climbs out with .."},
      {R"(["etc/../../x"])", "climbs out with .."},
      {R"(["/"])", "names the root"},
      {R"(["//./"])", "names the root"},
      {R"([7])", "non-string entry"},
      {R"({"a": "b"})", "not a JSON array"},
      {R"(["/etc)", "deleted.files"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    write(files.path + "/deleted.files", c.text);
    auto status = img::apply_rootfs_diff(files.path, rootfs.path);
    REQUIRE(!status.ok());
    CHECK(status.error().message().find(c.reason) != std::string::npos);
    CHECK(std::filesystem::exists(rootfs.path + "/keep"));
  }
}
