#include "oci/image/checkpoint_image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/image/image.h"
#include "core/inspect.h"
#include "core/sys/io.h"
#include "oci/image/layout.h"
#include "oci/image/rootfs_diff.h"
#include "oci/image/skopeo.h"
#include "oci/state.h"

namespace cryo::oci::image {
namespace {

using nlohmann::json;

constexpr const char* kPodman = "io.podman.annotations.checkpoint.";
constexpr const char* kCheckpointctl = "org.criu.checkpoint.";
constexpr const char* kCrioName = "io.kubernetes.cri-o.annotations.checkpoint.name";
// The tag of the scratch layout skopeo copies from and into.
constexpr const char* kScratchTag = "checkpoint";
// cryo's image format version inside the layer: a newer one is refused
// before anything is unpacked.
constexpr const char* kFormatAnnotation = "org.cryo.checkpoint.format.version";

void remove_tree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

Result<std::string> make_temp_dir(const std::string& prefix) {
  std::string templ = prefix + "XXXXXX";
  if (!::mkdtemp(templ.data())) return errno_error("mkdtemp " + templ);
  return templ;
}

std::string temp_base() {
  const char* tmp = ::getenv("TMPDIR");
  return std::string(tmp && *tmp ? tmp : "/var/tmp") + "/cryo-checkpoint-";
}

// The architecture as Go (and so Podman and the OCI config) names it.
std::string host_arch() {
  struct utsname u;
  if (::uname(&u) < 0) return "";
  std::string m = u.machine;
  if (m == "x86_64") return "amd64";
  if (m == "aarch64") return "arm64";
  if (m == "i386" || m == "i686") return "386";
  if (m.starts_with("armv")) return "arm";
  return m;  // ppc64le, s390x, riscv64 are spelt alike
}

std::string host_kernel() {
  struct utsname u;
  return ::uname(&u) < 0 ? "" : u.release;
}

std::string os_release(const std::string& key) {
  auto text = read_file("/etc/os-release");
  if (!text.ok()) return "";
  size_t at = 0;
  while (at < text->size()) {
    size_t end = text->find('\n', at);
    if (end == std::string::npos) end = text->size();
    std::string line = text->substr(at, end - at);
    at = end + 1;
    if (!line.starts_with(key + "=")) continue;
    std::string value = line.substr(key.size() + 1);
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
    return value;
  }
  return "";
}

std::map<std::string, std::string> checkpoint_annotations(const CheckpointSource& source) {
  std::string p = kPodman, c = kCheckpointctl;
  std::map<std::string, std::string> a;
  a[p + "name"] = source.id;
  a[p + "runtime.name"] = "cryo";
  a[p + "runtime.version"] = CRYO_VERSION_STRING;
  a[p + "host.arch"] = host_arch();
  a[p + "host.kernel"] = host_kernel();
  a[p + "cgroups.version"] = ::access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0 ? "v2" : "v1";
  a[p + "distribution.name"] = os_release("ID");
  a[p + "distribution.version"] = os_release("VERSION_ID");
  // What only the container's engine knows (Podman puts them in config.json's annotations).
  for (const char* key : {"rawImageName", "rootfsImageID", "rootfsImageName"}) {
    auto it = source.container_annotations.find(p + key);
    if (it != source.container_annotations.end()) a[p + key] = it->second;
  }
  a[c + "engine.name"] = "cryo";
  a[c + "engine.version"] = CRYO_VERSION_STRING;
  a[c + "container.name"] = source.id;
  if (auto it = a.find(p + "rootfsImageName"); it != a.end()) a[c + "rootfsImageName"] = it->second;
  a[kCrioName] = source.id;
  a[kFormatAnnotation] = std::to_string(cryo::image::kFormatVersion);
  a["org.opencontainers.image.created"] = now_rfc3339();
  return a;
}

// config.dump as Podman's is shaped (the container's config with its OCI
// spec inside), spec.dump the bundle's config.json as it was.
Result<std::string> config_dump(const CheckpointSource& source, const std::string& spec_text) {
  try {
    json spec = json::parse(spec_text);
    json config = {{"id", source.id}, {"name", source.id}, {"spec", spec}, {"checkpointedTime", now_rfc3339()},
                   {"createdTime", now_rfc3339()}, {"ociRuntime", "cryo"}};
    // The image the rootfs came from, when config.json names it: Podman makes
    // the restored container's rootfs from it (libpod's ContainerConfig keys).
    for (const char* key : {"rawImageName", "rootfsImageID", "rootfsImageName"}) {
      auto it = source.container_annotations.find(std::string(kPodman) + key);
      if (it != source.container_annotations.end()) config[key] = it->second;
    }
    // Podman's cgroupfs path is PARENT/libpod-ID: a container cryo ran at
    // such a path goes back to the same one when Podman restores it.
    std::string cgroups_path = spec.value("/linux/cgroupsPath"_json_pointer, std::string());
    std::string leaf = "/libpod-" + source.id;
    if (cgroups_path.size() > leaf.size() && cgroups_path.ends_with(leaf))
      config["cgroupParent"] = cgroups_path.substr(0, cgroups_path.size() - leaf.size());
    return config.dump(1);
  } catch (const json::exception& e) {
    return Error(EINVAL, source.config_path + ": " + e.what());
  }
}

// The archive of --export (and the one layer of an image) written to file.
Status write_checkpoint_tar(const CheckpointSource& source, const std::string& file, Compression compression) {
  auto spec = read_file(source.config_path);
  if (!spec.ok()) return std::move(spec).error();
  auto config = config_dump(source, *spec);
  if (!config.ok()) return std::move(config).error();
  auto scratch = make_temp_dir(file + ".dumps-");
  if (!scratch.ok()) return std::move(scratch).error();
  Status status = [&]() -> Status {
    CRYO_TRY(write_file_atomic(*scratch + "/config.dump", *config));
    CRYO_TRY(write_file_atomic(*scratch + "/spec.dump", *spec));
    std::vector<ArchiveEntry> entries = {{"checkpoint", source.image_dir},
                                         {"config.dump", *scratch + "/config.dump"},
                                         {"spec.dump", *scratch + "/spec.dump"}};
    if (!source.rootfs.empty() && !source.ignore_rootfs) {
      auto written = write_rootfs_diff(source.rootfs, *scratch);
      if (!written.ok()) return std::move(written).error();
      for (const auto& name : *written) entries.push_back({name, *scratch + "/" + name});
    }
    if (!source.network_status.empty()) {
      CRYO_TRY(write_file_atomic(*scratch + "/network.status", source.network_status));
      entries.push_back({"network.status", *scratch + "/network.status"});
    }
    if (::access((source.image_dir + "/stats-dump").c_str(), F_OK) == 0)
      entries.push_back({"stats-dump", source.image_dir + "/stats-dump"});
    return write_tar(file, entries, compression);
  }();
  remove_tree(*scratch);
  return status;
}

// The image's config: what a registry and `podman image inspect` show;
// diff_id is the uncompressed layer's digest, as image-spec wants it.
json image_config(const CheckpointSource& source, const std::string& diff_id) {
  return {{"architecture", host_arch()},
          {"os", "linux"},
          {"created", now_rfc3339()},
          {"config", {{"Labels", {{"io.podman.annotations.checkpoint.name", source.id}}}}},
          {"rootfs", {{"type", "layers"}, {"diff_ids", json::array({diff_id})}}}};
}

Status write_oci_layout(const std::string& dir, const std::string& tag, const CheckpointSource& source,
                        Compression compression) {
  for (const std::string& d : {dir, dir + "/blobs", dir + "/blobs/sha256"})
    if (::mkdir(d.c_str(), 0755) < 0 && errno != EEXIST) return errno_error("mkdir " + d);
  std::string layer = dir + "/blobs/sha256/.cryo-layer-" + std::to_string(::getpid());
  Status written = write_checkpoint_tar(source, layer, compression);
  if (!written.ok()) {
    ::unlink(layer.c_str());
    return written;
  }
  auto diff_id = uncompressed_digest(layer);
  if (!diff_id.ok()) {
    ::unlink(layer.c_str());
    return std::move(diff_id).error();
  }
  ImageToWrite image{tag, layer, layer_media_type(compression), image_config(source, *diff_id).dump(),
                     checkpoint_annotations(source)};
  Status status = write_layout_image(dir, image);
  ::unlink(layer.c_str());  // gone already when it became a blob
  return status;
}

Status write_oci_archive(const std::string& file, const std::string& tag, const CheckpointSource& source,
                         Compression compression) {
  auto scratch = make_temp_dir(file + ".layout-");
  if (!scratch.ok()) return std::move(scratch).error();
  std::string tmp_file = file + ".tmp";
  Status status = [&]() -> Status {
    CRYO_TRY(write_oci_layout(*scratch, tag, source, compression));
    std::vector<ArchiveEntry> entries;
    for (const char* name : {"oci-layout", "index.json", "blobs"}) entries.push_back({name, *scratch + "/" + name});
    CRYO_TRY(write_tar(tmp_file, entries, Compression::kNone));
    if (::rename(tmp_file.c_str(), file.c_str()) < 0) return errno_error("rename " + tmp_file);
    return {};
  }();
  if (!status.ok()) ::unlink(tmp_file.c_str());
  remove_tree(*scratch);
  return status;
}

Status export_tar(const std::string& file, const CheckpointSource& source, Compression compression) {
  std::string tmp_file = file + ".tmp";
  Status status = write_checkpoint_tar(source, tmp_file, compression);
  if (status.ok() && ::rename(tmp_file.c_str(), file.c_str()) < 0) status = errno_error("rename " + tmp_file);
  if (!status.ok()) ::unlink(tmp_file.c_str());
  return status;
}

bool is_checkpoint_layer(const std::string& media_type) {
  return media_type == layer_media_type(Compression::kNone) || media_type == layer_media_type(Compression::kGzip) ||
         media_type == layer_media_type(Compression::kZstd) ||
         media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip";
}

// What makes an image one this host restores: a checkpoint, of this
// architecture, in an image format this cryo reads.
Status check_image(const LayoutImage& image, const std::string& what) {
  const auto& a = image.annotations;
  std::string p = kPodman;
  if (!a.contains(p + "name") && !a.contains(std::string(kCheckpointctl) + "container.name") && !a.contains(kCrioName))
    return Error(EINVAL, what + " is not a checkpoint image (no checkpoint annotations on its manifest)");
  std::string arch = host_arch();
  if (auto it = a.find(p + "host.arch"); it != a.end() && it->second != arch)
    return Error(EINVAL, what + " is a checkpoint made on " + it->second + ", this host is " + arch);
  try {
    json config = json::parse(image.config_json);
    std::string config_arch = config.value("architecture", "");
    if (!config_arch.empty() && config_arch != arch)
      return Error(EINVAL, what + ": its config says architecture " + config_arch + ", this host is " + arch);
  } catch (const json::exception& e) {
    return Error(EINVAL, what + ": config " + image.config.digest + ": " + e.what());
  }
  if (auto it = a.find(kFormatAnnotation); it != a.end()) {
    char* end = nullptr;
    unsigned long version = std::strtoul(it->second.c_str(), &end, 10);
    if (it->second.empty() || *end || version > cryo::image::kFormatVersion)
      return Error(EINVAL, what + " holds image format version " + it->second + ", newer than this cryo reads (" +
                               std::to_string(cryo::image::kFormatVersion) + "): restore it with a newer cryo");
  }
  if (image.layers.size() != 1)
    return Error(EINVAL, what + " has " + std::to_string(image.layers.size()) + " layers; a checkpoint image has one");
  if (!is_checkpoint_layer(image.layers[0].media_type))
    return Error(EINVAL, what + ": layer media type \"" + image.layers[0].media_type + "\" is not a tar");
  return {};
}

// The layer's files into root/files; checkpoint/ must hold an image.
Status unpack_files(const std::string& archive, const std::string& root) {
  std::string files = root + "/files";
  if (::mkdir(files.c_str(), 0700) < 0) return errno_error("mkdir " + files);
  CRYO_TRY(extract_tar(archive, files));
  if (::access((files + "/checkpoint/inventory.img").c_str(), F_OK) < 0)
    return Error(EINVAL, archive + " holds no checkpoint (no checkpoint/inventory.img)");
  return {};
}

bool through_skopeo(const Reference& ref) {
  return ref.transport == Transport::kDocker || ref.transport == Transport::kContainersStorage;
}

// docker:// and containers-storage: through skopeo, from an OCI layout
// written in a scratch directory; nothing is left behind.
Status push_with_skopeo(const Reference& ref, const CheckpointSource& source, const Destination& d) {
  auto scratch = make_temp_dir(temp_base());
  if (!scratch.ok()) return std::move(scratch).error();
  std::string layout = *scratch + "/layout";
  Status status = write_oci_layout(layout, kScratchTag, source, d.compression);
  if (status.ok())
    status = skopeo_copy("oci:" + layout + ":" + kScratchTag, ref.text, std::nullopt,
                         ref.transport == Transport::kDocker ? d.tls_verify : std::nullopt);
  remove_tree(*scratch);
  return status;
}

Result<LayoutImage> open_image(const Reference& ref, const std::string& root, std::optional<bool> tls_verify) {
  std::string dir = ref.path;
  std::string tag = ref.tag;
  if (ref.transport == Transport::kOciArchive) {
    dir = root + "/layout";
    if (::mkdir(dir.c_str(), 0700) < 0) return errno_error("mkdir " + dir);
    CRYO_TRY(extract_tar(ref.path, dir));
  } else if (through_skopeo(ref)) {
    dir = root + "/layout";
    tag = kScratchTag;
    CRYO_TRY(skopeo_copy(ref.text, "oci:" + dir + ":" + tag,
                         ref.transport == Transport::kDocker ? tls_verify : std::nullopt, std::nullopt));
  }
  auto image = read_layout_image(dir, tag);
  if (!image.ok()) return std::move(image).error().wrap(ref.text);
  CRYO_TRY(check_image(*image, ref.text));
  return image;
}

}  // namespace

UnpackedCheckpoint::~UnpackedCheckpoint() {
  if (!root_.empty()) remove_tree(root_);
}

Result<std::optional<bool>> parse_tls_verify(const std::string& value) {
  if (value.empty()) return std::optional<bool>();
  if (value == "true") return std::optional<bool>(true);
  if (value == "false") return std::optional<bool>(false);
  return Error(EINVAL, "--tls-verify takes true or false, not \"" + value + "\"");
}

Result<Destination> parse_destination(const std::string& export_file, const std::string& image_ref,
                                      const std::string& compression, const std::string& tls_verify) {
  Destination d;
  auto tls = parse_tls_verify(tls_verify);
  if (!tls.ok()) return std::move(tls).error();
  d.tls_verify = *tls;
  d.export_file = export_file;
  auto c = parse_compression(compression);
  if (!c.ok()) return std::move(c).error();
  d.compression = *c;
  if (!image_ref.empty()) {
    auto ref = parse_reference(image_ref);
    if (!ref.ok()) return std::move(ref).error();
    d.reference = *ref;
  }
  return d;
}

Status pack_checkpoint(const Destination& destination, const CheckpointSource& source) {
  if (!destination.export_file.empty())
    CRYO_TRY(export_tar(destination.export_file, source, destination.compression).wrap("--export " + destination.export_file));
  if (destination.reference) {
    const Reference& ref = *destination.reference;
    if (ref.transport == Transport::kOci)
      CRYO_TRY(write_oci_layout(ref.path, ref.tag, source, destination.compression).wrap(ref.text));
    else if (ref.transport == Transport::kOciArchive)
      CRYO_TRY(write_oci_archive(ref.path, ref.tag, source, destination.compression).wrap(ref.text));
    else
      CRYO_TRY(push_with_skopeo(ref, source, destination));
  }
  return {};
}

Result<UnpackedCheckpoint> import_checkpoint(const std::string& file) {
  auto root = make_temp_dir(temp_base());
  if (!root.ok()) return std::move(root).error();
  UnpackedCheckpoint unpacked(*root);
  CRYO_TRY(unpack_files(file, unpacked.root()).wrap("--import " + file));
  return unpacked;
}

Result<UnpackedCheckpoint> pull_checkpoint(const std::string& reference, const std::string& tls_verify) {
  auto tls = parse_tls_verify(tls_verify);
  if (!tls.ok()) return std::move(tls).error();
  auto ref = parse_reference(reference);
  if (!ref.ok()) return std::move(ref).error();
  auto root = make_temp_dir(temp_base());
  if (!root.ok()) return std::move(root).error();
  UnpackedCheckpoint unpacked(*root);
  auto image = open_image(*ref, unpacked.root(), *tls);
  if (!image.ok()) return std::move(image).error();
  CRYO_TRY(unpack_files(image->blob_path(image->layers[0]), unpacked.root()).wrap(reference));
  return unpacked;
}

Result<std::string> inspect_checkpoint_image(const std::string& what, bool with_pages, const std::string& tls_verify) {
  auto tls = parse_tls_verify(tls_verify);
  if (!tls.ok()) return std::move(tls).error();
  auto root = make_temp_dir(temp_base());
  if (!root.ok()) return std::move(root).error();
  UnpackedCheckpoint unpacked(*root);
  json out = {{"reference", what}};
  std::string layer = what;
  if (is_reference(what)) {
    auto ref = parse_reference(what);
    if (!ref.ok()) return std::move(ref).error();
    auto image = open_image(*ref, unpacked.root(), *tls);
    if (!image.ok()) return std::move(image).error();
    out["manifest"] = {{"mediaType", image->manifest.media_type}, {"digest", image->manifest.digest},
                       {"size", image->manifest.size}};
    out["annotations"] = image->annotations;
    out["layers"] = json::array();
    for (const auto& l : image->layers)
      out["layers"].push_back({{"mediaType", l.media_type}, {"digest", l.digest}, {"size", l.size}});
    try {
      out["config"] = json::parse(image->config_json);
    } catch (const json::exception&) {
    }
    layer = image->blob_path(image->layers[0]);
  }
  CRYO_TRY(unpack_files(layer, unpacked.root()).wrap(what));
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(unpacked.files())) files.push_back(e.path().filename());
  std::sort(files.begin(), files.end());
  out["files"] = files;
  // Where the container was on the network: what the restoring host sets up again.
  if (auto status = read_file(unpacked.files() + "/network.status"); status.ok()) {
    try {
      out["network.status"] = json::parse(*status);
    } catch (const json::exception& e) {
      return Error(EINVAL, what + ": network.status: " + e.what());
    }
  }
  auto checkpoint = inspect_image(unpacked.image_dir(), with_pages);
  if (!checkpoint.ok()) return std::move(checkpoint).error().wrap(what + ": checkpoint/");
  try {
    out["checkpoint"] = json::parse(*checkpoint);
  } catch (const json::exception& e) {
    return Error(EINVAL, what + ": " + e.what());
  }
  return out.dump(1);
}

}  // namespace cryo::oci::image
