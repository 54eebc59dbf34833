#include "core/inspect.h"

#include <google/protobuf/util/json_util.h>

#include "core/image/image.h"
#include "core/image_load.h"
#include "core/image/proto/files.pb.h"
#include "core/image/proto/mm.pb.h"
#include "core/image/proto/task.pb.h"
#include "core/image/proto/tree.pb.h"

namespace cryo {
namespace {

Result<std::string> to_json(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.preserve_proto_field_names = true;
  auto status = google::protobuf::util::MessageToJsonString(m, &out, options);
  if (!status.ok()) return Error(EINVAL, "json: " + std::string(status.message()));
  return out;
}

}  // namespace

Result<std::string> inspect_image(const std::string& dir, bool with_pages) {
  CRYO_ASSIGN(auto reader, image::ImageDirReader::open(dir));
  CRYO_ASSIGN(LoadedImage img, load_image(reader));
  std::string out = "{";
  CRYO_ASSIGN(std::string inventory, to_json(reader.inventory()));
  out += "\"inventory\":" + inventory;

  const image::Tree& tree = img.tree;
  CRYO_ASSIGN(std::string tree_json, to_json(tree));
  out += ",\"tree\":" + tree_json;

  image::Files& files = img.files;
  if (!with_pages)
    for (auto& shmem : *files.mutable_shmems()) shmem.clear_pages();
  CRYO_ASSIGN(std::string files_json, to_json(files));
  out += ",\"files\":" + files_json;

  out += ",\"processes\":[";
  bool first = true;
  for (const auto& task : tree.tasks()) {
    if (task.state() == image::TaskEntry::ZOMBIE) continue;
    image::Process& core = img.cores.at(task.pid());
    image::Mm& mm = img.mms.at(task.pid());
    uint64_t pages = 0;
    for (const auto& run : mm.pages()) pages += run.npages();
    size_t runs = static_cast<size_t>(mm.pages_size());
    if (!with_pages) mm.clear_pages();
    // Registers are raw bytes: show their sizes, not base64 noise.
    for (auto& t : *core.mutable_threads()) {
      t.set_gpregs(std::to_string(t.gpregs().size()) + " bytes");
      t.set_xstate(std::to_string(t.xstate().size()) + " bytes");
    }
    CRYO_ASSIGN(std::string core_json, to_json(core));
    CRYO_ASSIGN(std::string mm_json, to_json(mm));
    out += std::string(first ? "" : ",") + "{\"pid\":" + std::to_string(task.pid()) + ",\"core\":" + core_json +
           ",\"mm\":" + mm_json + ",\"dumped_pages\":" + std::to_string(pages) +
           ",\"page_runs\":" + std::to_string(runs) + "}";
    first = false;
  }
  out += "],\"pages_bytes\":" + std::to_string(reader.pages_size()) + "}";
  return out;
}

}  // namespace cryo
