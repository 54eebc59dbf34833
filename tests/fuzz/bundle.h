// A bundle: the files of one image directory in a single byte string, the
// input of the image-directory fuzzer (libFuzzer mutates one buffer) and the
// form its seeds are made in from real dumps.
//
//   bundle := file { kSeparator file }
//   file   := name [" " type] "\n" body
//
// A message file (inventory.img, tree.img, files.img, core-PID.img,
// mm-PID.img) carries only its protobuf message: write_bundle() frames it
// with image::encode, so a mutation reaches the loader's consistency checks
// instead of failing its checksum (the framing itself is the decode fuzzer's
// job). A body that does not parse as its message is written as it is.
// pages.img carries the page data after its header. The inventory's file
// sizes are set to the sizes written, for the same reason as the framing.
//
// A type makes the file something an image directory unpacked from anywhere
// may hold instead of a regular file: "fifo" (a named pipe nobody writes) or
// "devzero" (a symlink to /dev/zero, which never ends); its body is ignored.
#pragma once

#include <google/protobuf/message_lite.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/image/image.h"
#include "core/sys/result.h"

namespace cryo::fuzz {

// Unlikely in a message or in page data; the seed maker checks it is absent.
constexpr std::string_view kSeparator = "\n=cryo-fuzz-file=\n";

struct BundleFile {
  std::string name;
  std::string body;
  std::string type;  // empty for a regular file
};

// The kind an image directory gives a file of this name (inventory.img,
// tree.img, files.img, pages.img, core-*, mm-*), or none.
std::optional<image::Kind> kind_of(std::string_view name);
// An empty message of the type a file of this kind holds (none for pages).
std::unique_ptr<google::protobuf::MessageLite> new_message(image::Kind kind);

std::vector<BundleFile> split_bundle(std::string_view bytes);
std::string join_bundle(const std::vector<BundleFile>& files);

// Empties dir (a directory of the fuzzer's own) and writes the bundle's
// files into it as an image directory. A name that is not a plain file name
// ([A-Za-z0-9._-], not starting with '.') is skipped.
Status write_bundle(const std::vector<BundleFile>& files, const std::string& dir);

}  // namespace cryo::fuzz
