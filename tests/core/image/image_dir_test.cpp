// An image directory may come from anywhere (a tarball, a registry): a file
// of it that is not a regular file, or larger than any image file, must be
// refused without being read. Found by the image-directory fuzzer
// (tests/fuzz/): inventory.img as a symlink to /dev/zero made the reader
// read forever, and a FIFO made it block forever.
#include "core/image/image.h"

#include <sys/stat.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <filesystem>
#include <optional>

#include "core/image/proto/files.pb.h"
#include "core/image/proto/tree.pb.h"
#include "core/sys/io.h"

using namespace cryo;
using namespace cryo::image;
namespace fs = std::filesystem;

namespace {

// A small complete image, written the way a dump writes one.
struct ImageDir {
  std::string dir;
  ImageDir() {
    char tmpl[] = "/tmp/cryo-image-dir-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    dir = tmpl;
    auto writer = ImageDirWriter::create(dir);
    REQUIRE(writer.ok());
    Tree tree;
    auto* task = tree.add_tasks();
    task->set_pid(100);
    task->add_tids(100);
    REQUIRE(writer->write(kTreeName, Kind::kTree, tree).ok());
    REQUIRE(writer->write(kFilesName, Kind::kFiles, Files()).ok());
    REQUIRE(writer->commit(Inventory()).ok());
  }
  ~ImageDir() { fs::remove_all(dir); }

  std::string path(const std::string& name) const { return dir + "/" + name; }

  // Sets the size the inventory lists for name to what stat says of it now,
  // as a hostile image would: the size check must not be what stops it.
  void list_as_is(const std::string& name) const {
    auto bytes = read_file(path(kInventoryName));
    REQUIRE(bytes.ok());
    Inventory inventory;
    REQUIRE(decode_one(Kind::kInventory, *bytes, &inventory).ok());
    struct stat st;
    REQUIRE(::stat(path(name).c_str(), &st) == 0);
    for (auto& f : *inventory.mutable_files())
      if (f.name() == name) f.set_size(static_cast<uint64_t>(st.st_size));
    REQUIRE(write_file_atomic(path(kInventoryName), encode(Kind::kInventory, {&inventory})).ok());
  }
};

// The error reading name out of the image gives, or none.
std::optional<Error> read_error(const ImageDir& image, const std::string& name) {
  auto reader = ImageDirReader::open(image.dir);
  if (!reader.ok()) return reader.error();
  Tree tree;
  Files files;
  Status st = name == kFilesName ? reader->read(name, Kind::kFiles, &files) : reader->read(name, Kind::kTree, &tree);
  if (!st.ok()) return st.error();
  return std::nullopt;
}

// A regression blocks or reads forever: fail after a few seconds instead.
struct Deadline {
  Deadline() { ::alarm(20); }
  ~Deadline() { ::alarm(0); }
};

}  // namespace

TEST_CASE("a complete image reads back") {
  ImageDir image;
  CHECK(!read_error(image, kTreeName));
  CHECK(!read_error(image, kFilesName));
}

TEST_CASE("an image file that is a FIFO is refused, not waited on") {
  Deadline deadline;
  for (const char* name : {kInventoryName, kTreeName, kPagesName}) {
    CAPTURE(name);
    ImageDir image;
    REQUIRE(::unlink(image.path(name).c_str()) == 0);
    REQUIRE(::mkfifo(image.path(name).c_str(), 0600) == 0);
    if (std::string(name) != kInventoryName) image.list_as_is(name);
    auto error = read_error(image, name);
    REQUIRE(error);
    CHECK(error->message().find("not a regular file") != std::string::npos);
  }
}

TEST_CASE("an image file that is a device is refused, not read") {
  // /dev/null, not /dev/zero: a regression must not eat the machine's memory.
  Deadline deadline;
  for (const char* name : {kInventoryName, kTreeName, kPagesName}) {
    CAPTURE(name);
    ImageDir image;
    REQUIRE(::unlink(image.path(name).c_str()) == 0);
    REQUIRE(::symlink("/dev/null", image.path(name).c_str()) == 0);
    if (std::string(name) != kInventoryName) image.list_as_is(name);
    auto error = read_error(image, name);
    REQUIRE(error);
    CHECK(error->message().find("not a regular file") != std::string::npos);
  }
}

TEST_CASE("a message file larger than one record can make it is refused unread") {
  Deadline deadline;
  for (const char* name : {kInventoryName, kTreeName}) {
    CAPTURE(name);
    ImageDir image;
    // Sparse: takes no disk, and would take the memory of its size to read.
    REQUIRE(::truncate(image.path(name).c_str(), static_cast<off_t>(kMaxRecordSize + 4096)) == 0);
    if (std::string(name) != kInventoryName) image.list_as_is(name);
    auto error = read_error(image, name);
    REQUIRE(error);
    CHECK(error->code() == EFBIG);
  }
}
