// Fuzz target: a whole image directory, as `cryo restore` and `cryo inspect`
// read it: ImageDirReader::open (inventory, file sizes, the page file's
// header), load_image (every message, the consistency of the tree, threads,
// mappings, fd tables and files, every page run against its checksum), then
// the JSON `cryo inspect --pages` prints.
//
// Input: a bundle (tests/fuzz/bundle.h), written into a directory of the
// fuzzer's own on every run.
#include <stdlib.h>
#include <unistd.h>

#include <google/protobuf/stubs/logging.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

#include "core/image/image.h"
#include "core/image_load.h"
#include "core/inspect.h"
#include "tests/fuzz/bundle.h"

using namespace cryo;

namespace {

// The directory every input is written into, one for the whole run and on
// tmpfs where there is one: a run costs a few small writes, not a mkdir.
// Removed at exit; a crash leaves its last input written out.
class ScratchDir {
 public:
  ScratchDir() {
    path_ = std::string(::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") + "/cryo-fuzz-XXXXXX";
    if (!::mkdtemp(path_.data())) {
      std::perror("image_dir_fuzzer: mkdtemp");
      std::abort();
    }
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

const std::string& image_dir() {
  static ScratchDir dir;
  return dir.path();
}

}  // namespace

// Protobuf logs every string field that is not UTF-8: thousands of lines.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto files = fuzz::split_bundle(std::string_view(reinterpret_cast<const char*>(data), size));
  if (auto written = fuzz::write_bundle(files, image_dir()); !written.ok()) {
    // The harness's own writes failed (a full tmpfs?): the run cannot go on.
    std::fprintf(stderr, "image_dir_fuzzer: %s\n", written.error().message().c_str());
    std::abort();
  }
  auto reader = image::ImageDirReader::open(image_dir());
  if (!reader.ok()) return 0;
  if (!load_image(*reader).ok()) return 0;
  // Loaded: what inspect prints of it must come out too (it loads it again).
  if (!inspect_image(image_dir(), true).ok()) __builtin_trap();
  return 0;
}
