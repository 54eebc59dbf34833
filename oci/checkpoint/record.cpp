#include "oci/checkpoint/record.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/sys/io.h"

namespace cryo::oci {

using nlohmann::json;

Status write_record(const std::string& image_dir, const CheckpointRecord& r) {
  CRYO_TRY(write_file_atomic(image_dir + "/descriptors.json", json(r.descriptors).dump()));
  json j = {{"id", r.id}, {"mounts", r.mounts}, {"network", r.network}, {"console", r.console}, {"cgroup", r.cgroup}};
  return write_file_atomic(image_dir + "/container.json", j.dump(1));
}

Result<CheckpointRecord> read_record(const std::string& image_dir) {
  if (::access((image_dir + "/inventory.img").c_str(), F_OK) < 0)
    return Error(ENOENT, image_dir + " holds no complete checkpoint (no inventory.img)");
  auto text = read_file(image_dir + "/container.json");
  if (!text.ok())
    return Error(ENOENT, image_dir + " holds no container checkpoint (no container.json): an image of `cryo dump` "
                                     "is restored with `cryo restore -D DIR`");
  CheckpointRecord r;
  try {
    json j = json::parse(*text);
    r.id = j.at("id").get<std::string>();
    r.mounts = j.at("mounts").get<std::vector<std::string>>();
    r.network = j.at("network").get<std::string>();
    r.console = j.at("console").get<std::string>();
    r.cgroup = j.value("cgroup", "");
    auto descriptors = read_file(image_dir + "/descriptors.json");
    if (descriptors.ok()) r.descriptors = json::parse(*descriptors).get<std::vector<std::string>>();
  } catch (const json::exception& e) {
    return Error(EINVAL, image_dir + "/container.json: " + e.what());
  }
  return r;
}

}  // namespace cryo::oci
