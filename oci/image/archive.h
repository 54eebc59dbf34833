// Tar archives (libarchive): a checkpoint's files packed, and an archive from
// elsewhere unpacked so that nothing it says can write outside its directory.
#pragma once

#include <string>
#include <vector>

#include "core/sys/result.h"

namespace cryo::oci::image {

enum class Compression { kNone, kGzip, kZstd };

// "none", "gzip" or "zstd" (the names of --compress).
Result<Compression> parse_compression(const std::string& name);
// The OCI media type of a layer of that compression.
const char* layer_media_type(Compression c);

// What goes into an archive: the file or directory tree at source, named name.
struct ArchiveEntry {
  std::string name;
  std::string source;
};

// Writes a tar archive of the entries to path (files and directories only,
// owned by root, in name order so the same checkpoint packs the same bytes).
Status write_tar(const std::string& path, const std::vector<ArchiveEntry>& entries, Compression compression);

// The sha256 of the archive at path once decompressed (an OCI config's
// diff_id of a layer).
Result<std::string> uncompressed_digest(const std::string& path);

// Unpacks the tar archive at path (any compression libarchive reads) into the
// existing directory dir. Only files and directories are taken, named below
// dir: an absolute name, a `..` component, a symlink, a hard link, a device or
// a fifo refuses the whole archive, naming the entry; a truncated or corrupt
// archive is refused too. What was unpacked before a refusal stays in dir for
// the caller to remove.
Status extract_tar(const std::string& path, const std::string& dir);

}  // namespace cryo::oci::image
