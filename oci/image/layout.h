// The OCI image layout (image-spec's image-layout.md): oci-layout,
// index.json and blobs/sha256/<hex>, one manifest per image, found by its
// org.opencontainers.image.ref.name. Blobs are content-addressed and every
// one read back is checked against its descriptor's size and digest.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/sys/result.h"

namespace cryo::oci::image {

inline constexpr const char* kManifestMediaType = "application/vnd.oci.image.manifest.v1+json";
inline constexpr const char* kConfigMediaType = "application/vnd.oci.image.config.v1+json";
inline constexpr const char* kRefNameAnnotation = "org.opencontainers.image.ref.name";

struct Descriptor {
  std::string media_type;
  std::string digest;
  int64_t size = 0;
};

struct ImageToWrite {
  std::string tag;                       // empty: an image without a ref.name
  std::string layer_file;                // the layer's bytes, copied into the layout
  std::string layer_media_type;
  std::string config;                    // the config blob (JSON)
  std::map<std::string, std::string> annotations;  // on the manifest and its index entry
};

// Adds the image to the layout at dir (made if missing); an image of the same
// tag in index.json is replaced.
Status write_layout_image(const std::string& dir, const ImageToWrite& image);

struct LayoutImage {
  Descriptor manifest;
  Descriptor config;
  std::vector<Descriptor> layers;
  std::map<std::string, std::string> annotations;
  std::string config_json;
  std::string dir;
  std::string blob_path(const Descriptor& d) const;
};

// The image of tag (the only image when tag is empty) in the layout at dir,
// its manifest, config and layers verified (size and sha256).
Result<LayoutImage> read_layout_image(const std::string& dir, const std::string& tag);

}  // namespace cryo::oci::image
