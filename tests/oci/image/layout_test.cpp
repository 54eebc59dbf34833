// The layout's blobs are verified when read; archives unpack only below
// their directory. Real files in a temp dir, no mocks.
#include "oci/image/layout.h"

#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "oci/image/archive.h"
#include "oci/image/digest.h"
#include "tests/temp_dir.h"

namespace img = cryo::oci::image;

namespace {

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

img::LayoutImage write_image(const std::string& dir, const std::string& tag) {
  write(dir + "/layer", "the layer's bytes");
  img::ImageToWrite image{tag, dir + "/layer", img::layer_media_type(img::Compression::kNone), "{}",
                          {{"k", "v"}}};
  REQUIRE(img::write_layout_image(dir + "/layout", image).ok());
  auto read = img::read_layout_image(dir + "/layout", tag);
  REQUIRE(read.ok());
  return *read;
}

}  // namespace

TEST_CASE("sha256 digests as OCI names them; only a well-formed one may name a blob") {
  CHECK(*img::sha256_of("") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(img::valid_digest("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
  CHECK(!img::valid_digest("sha256:../../../etc/passwd"));
  CHECK(!img::valid_digest("sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"));
  CHECK(!img::valid_digest("sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
}

TEST_CASE("a layout round-trips, and a changed or truncated layer is refused naming why") {
  cryo::testing::TempDir t("layout-test");
  auto image = write_image(t.path, "v1");
  CHECK(image.annotations.at("k") == "v");
  REQUIRE(image.layers.size() == 1);
  std::string blob = image.blob_path(image.layers[0]);
  write(blob, "the layer's bytez");  // same size, other content
  auto r = img::read_layout_image(t.path + "/layout", "v1");
  REQUIRE(!r.ok());
  CHECK(r.error().message().find("corrupt") != std::string::npos);
  REQUIRE(::truncate(blob.c_str(), 3) == 0);
  r = img::read_layout_image(t.path + "/layout", "v1");
  REQUIRE(!r.ok());
  CHECK(r.error().message().find("truncated") != std::string::npos);
  r = img::read_layout_image(t.path + "/layout", "other");
  REQUIRE(!r.ok());
  CHECK(r.error().message().find("no image tagged") != std::string::npos);
}

TEST_CASE("an archive entry that would leave the directory refuses the archive") {
  cryo::testing::TempDir t("layout-test");
  // Made with tar(1) from real files: ../ names come from --transform.
  std::filesystem::create_directories(t.path + "/src/checkpoint");
  write(t.path + "/src/checkpoint/inventory.img", "x");
  REQUIRE(std::system(("tar -C " + t.path + "/src -cf " + t.path + "/good.tar checkpoint").c_str()) == 0);
  REQUIRE(std::system(("tar -C " + t.path + "/src -cf " + t.path + "/evil.tar --transform 's,^checkpoint,../../x,' "
                       "checkpoint 2>/dev/null").c_str()) == 0);
  std::filesystem::create_directories(t.path + "/a/b");
  CHECK(img::extract_tar(t.path + "/good.tar", t.path + "/a/b").ok());
  CHECK(std::filesystem::exists(t.path + "/a/b/checkpoint/inventory.img"));
  std::filesystem::create_directories(t.path + "/c/d");
  auto s = img::extract_tar(t.path + "/evil.tar", t.path + "/c/d");
  REQUIRE(!s.ok());
  CHECK(s.error().message().find("climbs out") != std::string::npos);
  CHECK(!std::filesystem::exists(t.path + "/x"));
}
