// A container checkpoint that travels: packed as a tar archive in the layout
// of Podman's `container checkpoint --export` (checkpoint/ holding the image
// directory, config.dump, spec.dump, rootfs-diff.tar and deleted.files (see
// rootfs_diff.h), network.status, stats-dump), or as an OCI image whose one layer is
// that archive, with the annotations Podman, checkpointctl and CRI-O read;
// unpacked and verified again before a restore makes any process.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>

#include "core/sys/result.h"
#include "oci/image/archive.h"
#include "oci/image/reference.h"

namespace cryo::oci::image {

// Where a checkpoint goes: a plain archive (--export FILE) and/or an image
// reference (--image-ref REF), checked before anything is dumped.
struct Destination {
  std::string export_file;  // absolute, or empty
  std::optional<Reference> reference;
  Compression compression = Compression::kZstd;
  std::optional<bool> tls_verify;  // --tls-verify for a docker:// registry
};
Result<Destination> parse_destination(const std::string& export_file, const std::string& image_ref,
                                      const std::string& compression, const std::string& tls_verify = "");

// What is packed: the image directory and what the container was.
struct CheckpointSource {
  std::string image_dir;
  std::string config_path;  // the bundle's config.json
  std::string id;
  std::map<std::string, std::string> container_annotations;  // config.json's (rootfs image names, if any)
  std::string rootfs;          // the container's root (absolute): its changes are packed
  bool ignore_rootfs = false;  // --ignore-rootfs: they are not
  std::string network_status;  // network.status's text, or empty
};
Status pack_checkpoint(const Destination& destination, const CheckpointSource& source);

// A checkpoint unpacked into a private directory, removed with this object.
class UnpackedCheckpoint {
 public:
  explicit UnpackedCheckpoint(std::string root) : root_(std::move(root)) {}
  UnpackedCheckpoint(UnpackedCheckpoint&& other) noexcept : root_(std::exchange(other.root_, "")) {}
  UnpackedCheckpoint& operator=(UnpackedCheckpoint&&) = delete;
  ~UnpackedCheckpoint();
  const std::string& root() const { return root_; }
  // The checkpoint's files: checkpoint/ (the image directory), spec.dump...
  std::string files() const { return root_ + "/files"; }
  std::string image_dir() const { return files() + "/checkpoint"; }

 private:
  std::string root_;
};

// --import FILE: an archive of --export (or of Podman's).
Result<UnpackedCheckpoint> import_checkpoint(const std::string& file);
// --image-ref REF: the image verified (digests, sizes, architecture, format
// version) and its layer unpacked. docker:// and containers-storage: are
// copied into an OCI layout by skopeo first, and verified there.
Result<UnpackedCheckpoint> pull_checkpoint(const std::string& reference, const std::string& tls_verify = "");
// "true"/"false" (--tls-verify's value), or nothing when not given.
Result<std::optional<bool>> parse_tls_verify(const std::string& value);

// `cryo inspect REF|FILE`: the image's annotations and layers and the
// checkpoint inside (as `cryo inspect DIR` shows an image directory), as JSON.
Result<std::string> inspect_checkpoint_image(const std::string& reference_or_file, bool with_pages,
                                             const std::string& tls_verify = "");

}  // namespace cryo::oci::image
