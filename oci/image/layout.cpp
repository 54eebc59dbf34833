#include "oci/image/layout.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/sys/io.h"
#include "oci/image/digest.h"

namespace cryo::oci::image {
namespace {

using nlohmann::json;

constexpr int64_t kMaxJsonBlob = 4 << 20;  // a manifest or config is a few KiB

std::string blob_file(const std::string& dir, const std::string& digest) {
  return dir + "/blobs/sha256/" + digest.substr(7);
}

Status make_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) < 0 && errno != EEXIST) return errno_error("mkdir " + path);
  return {};
}

json descriptor_json(const Descriptor& d) {
  return {{"mediaType", d.media_type}, {"digest", d.digest}, {"size", d.size}};
}

Result<Descriptor> add_blob_bytes(const std::string& dir, const std::string& bytes, const std::string& media_type) {
  CRYO_ASSIGN(std::string digest, sha256_of(bytes));
  Descriptor d{media_type, std::move(digest), static_cast<int64_t>(bytes.size())};
  CRYO_TRY(write_file_atomic(blob_file(dir, d.digest), bytes));
  return d;
}

Result<Descriptor> add_blob_file(const std::string& dir, const std::string& file, const std::string& media_type) {
  auto digest = sha256_file(file);
  if (!digest.ok()) return std::move(digest).error();
  Descriptor d{media_type, digest->digest, digest->size};
  std::string target = blob_file(dir, d.digest);
  if (::rename(file.c_str(), target.c_str()) < 0) return errno_error("rename " + file + " to " + target);
  return d;
}

// A descriptor of a manifest's JSON, its digest checked for a safe form.
Result<Descriptor> parse_descriptor(const json& j, const std::string& what) {
  Descriptor d;
  try {
    d.media_type = j.value("mediaType", "");
    d.digest = j.at("digest").get<std::string>();
    d.size = j.at("size").get<int64_t>();
  } catch (const json::exception& e) {
    return Error(EINVAL, what + ": " + e.what());
  }
  if (!valid_digest(d.digest)) return Error(EINVAL, what + ": digest \"" + d.digest + "\" is not sha256:<64 hex digits>");
  if (d.size < 0) return Error(EINVAL, what + ": negative size");
  return d;
}

// The blob is there, of the descriptor's size and digest.
Status verify_blob(const std::string& dir, const Descriptor& d, const std::string& what) {
  std::string path = blob_file(dir, d.digest);
  auto actual = sha256_file(path);
  if (!actual.ok()) return std::move(actual).error().wrap(what + " " + d.digest);
  if (actual->size != d.size)
    return Error(EINVAL, what + " " + d.digest + " is " + std::to_string(actual->size) + " bytes, its descriptor says " +
                             std::to_string(d.size) + " (truncated or replaced)");
  if (actual->digest != d.digest)
    return Error(EINVAL, what + " " + d.digest + ": content digest is " + actual->digest + " (corrupt)");
  return {};
}

Result<std::string> read_verified(const std::string& dir, const Descriptor& d, const std::string& what) {
  if (d.size > kMaxJsonBlob) return Error(EINVAL, what + " " + d.digest + " is too large");
  CRYO_TRY(verify_blob(dir, d, what));
  return read_file(blob_file(dir, d.digest));
}

Result<json> parse_json(const std::string& text, const std::string& what) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    return Error(EINVAL, what + ": " + e.what());
  }
}

Result<Descriptor> find_manifest(const std::string& dir, const json& index, const std::string& tag) {
  if (!index.contains("manifests") || !index["manifests"].is_array())
    return Error(EINVAL, dir + "/index.json lists no manifests");
  std::vector<json> matches;
  for (const auto& m : index["manifests"]) {
    std::string name;
    if (m.contains("annotations") && m["annotations"].is_object())
      name = m["annotations"].value(kRefNameAnnotation, "");
    if (tag.empty() || name == tag) matches.push_back(m);
  }
  if (matches.empty()) return Error(ENOENT, dir + " has no image tagged \"" + tag + "\"");
  if (matches.size() > 1) return Error(EINVAL, dir + " holds several images: name one (oci:DIR:TAG)");
  return parse_descriptor(matches[0], dir + "/index.json");
}

}  // namespace

std::string LayoutImage::blob_path(const Descriptor& d) const { return blob_file(dir, d.digest); }

Status write_layout_image(const std::string& dir, const ImageToWrite& image) {
  CRYO_TRY(make_dir(dir));
  CRYO_TRY(make_dir(dir + "/blobs"));
  CRYO_TRY(make_dir(dir + "/blobs/sha256"));
  CRYO_TRY(write_file_atomic(dir + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})"));
  auto layer = add_blob_file(dir, image.layer_file, image.layer_media_type);
  if (!layer.ok()) return std::move(layer).error();
  auto config = add_blob_bytes(dir, image.config, kConfigMediaType);
  if (!config.ok()) return std::move(config).error();
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", kManifestMediaType},
                   {"config", descriptor_json(*config)},
                   {"layers", json::array({descriptor_json(*layer)})},
                   {"annotations", image.annotations}};
  auto m = add_blob_bytes(dir, manifest.dump(), kManifestMediaType);
  if (!m.ok()) return std::move(m).error();

  json index = {{"schemaVersion", 2}, {"mediaType", "application/vnd.oci.image.index.v1+json"},
                {"manifests", json::array()}};
  if (auto old = read_file(dir + "/index.json"); old.ok()) {
    auto parsed = parse_json(*old, dir + "/index.json");
    if (!parsed.ok()) return std::move(parsed).error();
    if (parsed->contains("manifests") && (*parsed)["manifests"].is_array())
      for (const auto& entry : (*parsed)["manifests"]) {
        std::string name;
        if (entry.contains("annotations") && entry["annotations"].is_object())
          name = entry["annotations"].value(kRefNameAnnotation, "");
        if (name != image.tag) index["manifests"].push_back(entry);
      }
  }
  json entry = descriptor_json(*m);
  if (!image.tag.empty()) entry["annotations"] = {{kRefNameAnnotation, image.tag}};
  index["manifests"].push_back(entry);
  return write_file_atomic(dir + "/index.json", index.dump());
}

Result<LayoutImage> read_layout_image(const std::string& dir, const std::string& tag) {
  auto layout_text = read_file(dir + "/oci-layout");
  if (!layout_text.ok()) return Error(ENOENT, dir + " is not an OCI image layout (no oci-layout)");
  auto layout = parse_json(*layout_text, dir + "/oci-layout");
  if (!layout.ok()) return std::move(layout).error();
  std::string version = layout->is_object() ? layout->value("imageLayoutVersion", "") : "";
  if (!version.starts_with("1."))
    return Error(EINVAL, dir + ": image layout version \"" + version + "\" is not one cryo reads (1.x)");
  auto index_text = read_file(dir + "/index.json");
  if (!index_text.ok()) return std::move(index_text).error();
  auto index = parse_json(*index_text, dir + "/index.json");
  if (!index.ok()) return std::move(index).error();

  LayoutImage image;
  image.dir = dir;
  auto manifest_desc = find_manifest(dir, *index, tag);
  if (!manifest_desc.ok()) return std::move(manifest_desc).error();
  image.manifest = *manifest_desc;
  auto manifest_text = read_verified(dir, image.manifest, "manifest");
  if (!manifest_text.ok()) return std::move(manifest_text).error();
  auto manifest = parse_json(*manifest_text, "manifest " + image.manifest.digest);
  if (!manifest.ok()) return std::move(manifest).error();
  try {
    int schema = manifest->at("schemaVersion").get<int>();
    if (schema != 2) return Error(EINVAL, "manifest schema version " + std::to_string(schema) + " is not 2");
    if (manifest->contains("annotations"))
      image.annotations = (*manifest)["annotations"].get<std::map<std::string, std::string>>();
    auto config = parse_descriptor(manifest->at("config"), "manifest's config");
    if (!config.ok()) return std::move(config).error();
    image.config = *config;
    for (const auto& l : manifest->at("layers")) {
      auto layer = parse_descriptor(l, "manifest's layer");
      if (!layer.ok()) return std::move(layer).error();
      image.layers.push_back(*layer);
    }
  } catch (const json::exception& e) {
    return Error(EINVAL, "manifest " + image.manifest.digest + ": " + e.what());
  }
  auto config_text = read_verified(dir, image.config, "config");
  if (!config_text.ok()) return std::move(config_text).error();
  image.config_json = *config_text;
  for (const auto& layer : image.layers) CRYO_TRY(verify_blob(dir, layer, "layer"));
  return image;
}

}  // namespace cryo::oci::image
