#include "oci/image/archive.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

#include "core/sys/dir.h"
#include "core/sys/io.h"
#include "oci/image/digest.h"
#include "oci/image/dynlib.h"

namespace cryo::oci::image {
namespace {

// libarchive, which every entry point below has loaded first.
const dyn::LibArchive& la() { return **dyn::libarchive(); }

struct ArchiveDeleter {
  void operator()(struct archive* a) const {
    if (a) la().archive_free(a);  // closes too
  }
};
using ArchivePtr = std::unique_ptr<struct archive, ArchiveDeleter>;

struct EntryDeleter {
  void operator()(struct archive_entry* e) const { la().archive_entry_free(e); }
};

Error archive_failure(struct archive* a, const std::string& what) {
  const char* text = la().archive_error_string(a);
  int err = la().archive_errno(a);
  return Error(err > 0 ? err : 0, what + ": " + (text ? text : "libarchive failed"));
}

Status write_header(struct archive* a, const std::string& name, const struct stat& st, mode_t type) {
  std::unique_ptr<struct archive_entry, EntryDeleter> entry(la().archive_entry_new());
  la().archive_entry_set_pathname(entry.get(), name.c_str());
  la().archive_entry_set_filetype(entry.get(), type);
  la().archive_entry_set_perm(entry.get(), st.st_mode & 0755);
  la().archive_entry_set_size(entry.get(), type == AE_IFREG ? st.st_size : 0);
  la().archive_entry_set_mtime(entry.get(), st.st_mtim.tv_sec, 0);
  if (la().archive_write_header(a, entry.get()) != ARCHIVE_OK) return archive_failure(a, "tar header of " + name);
  return {};
}

Status add_file(struct archive* a, const std::string& name, const std::string& source, const struct stat& st) {
  auto fd = open_file(source, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (!fd.ok()) return std::move(fd).error();
  CRYO_TRY(write_header(a, name, st, AE_IFREG));
  char buf[1 << 16];
  int64_t left = st.st_size;
  while (left > 0) {
    ssize_t n = ::read(fd->get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("read " + source);
    if (n == 0) return Error(EIO, source + " shrank while being packed");
    if (n > left) n = static_cast<ssize_t>(left);
    if (la().archive_write_data(a, buf, static_cast<size_t>(n)) != n) return archive_failure(a, "packing " + source);
    left -= n;
  }
  return {};
}

Status add_tree(struct archive* a, const std::string& name, const std::string& source) {
  struct stat st;
  if (::lstat(source.c_str(), &st) < 0) return errno_error("stat " + source);
  if (S_ISREG(st.st_mode)) return add_file(a, name, source, st);
  if (!S_ISDIR(st.st_mode)) return Error(EINVAL, source + ": only files and directories are packed");
  CRYO_TRY(write_header(a, name + "/", st, AE_IFDIR));
  auto names = sorted_names(source);
  if (!names.ok()) return std::move(names).error();
  for (const auto& child : *names) CRYO_TRY(add_tree(a, name + "/" + child, source + "/" + child));
  return {};
}

// An archive's name as a path below the destination, or an error naming why
// it cannot be one.
Result<std::vector<std::string>> safe_components(const std::string& name) {
  if (name.empty()) return Error(EINVAL, "an entry without a name");
  if (name.starts_with("/")) return Error(EINVAL, "entry \"" + name + "\" has an absolute path");
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    std::string part = name.substr(start, end - start);
    if (part == "..") return Error(EINVAL, "entry \"" + name + "\" climbs out with ..");
    if (!part.empty() && part != ".") parts.push_back(part);
    start = end + 1;
  }
  return parts;  // empty: the archive's root ("./")
}

// The directory parts[0..count) below root, made as needed, opened without
// following any symlink.
Result<UniqueFd> open_dirs(int root, const std::vector<std::string>& parts, size_t count) {
  UniqueFd dir(::fcntl(root, F_DUPFD_CLOEXEC, 0));
  if (!dir) return errno_error("dup");
  for (size_t i = 0; i < count; ++i) {
    if (::mkdirat(dir.get(), parts[i].c_str(), 0700) < 0 && errno != EEXIST) return errno_error("mkdir " + parts[i]);
    int next = ::openat(dir.get(), parts[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) return errno_error("open directory " + parts[i]);
    dir = UniqueFd(next);
  }
  return dir;
}

Status extract_file(struct archive* a, int root, const std::vector<std::string>& parts, mode_t mode,
                    const std::string& name) {
  auto parent = open_dirs(root, parts, parts.size() - 1);
  if (!parent.ok()) return std::move(parent).error();
  int fd = ::openat(parent->get(), parts.back().c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    (mode & 0755) | 0600);
  if (fd < 0) return errno_error("create " + name);
  UniqueFd out(fd);
  char buf[1 << 16];
  for (;;) {
    la_ssize_t n = la().archive_read_data(a, buf, sizeof buf);
    if (n < 0) return archive_failure(a, "reading " + name);
    if (n == 0) return {};
    CRYO_TRY(write_all(out.get(), buf, static_cast<size_t>(n)));
  }
}

Status extract_entry(struct archive* a, struct archive_entry* entry, int root) {
  const char* raw = la().archive_entry_pathname(entry);
  std::string name = raw ? raw : "";
  auto parts = safe_components(name);
  if (!parts.ok()) return std::move(parts).error();
  if (la().archive_entry_hardlink(entry)) return Error(EINVAL, "entry \"" + name + "\" is a hard link");
  mode_t type = la().archive_entry_filetype(entry);
  if (parts->empty() && type != AE_IFDIR) return Error(EINVAL, "entry \"" + name + "\" names the archive's root");
  if (type == AE_IFDIR) {
    auto dir = open_dirs(root, *parts, parts->size());
    return dir.ok() ? Status{} : Status(std::move(dir).error());
  }
  if (type == AE_IFLNK) return Error(EINVAL, "entry \"" + name + "\" is a symlink");
  if (type != AE_IFREG) return Error(EINVAL, "entry \"" + name + "\" is a device, fifo or socket");
  return extract_file(a, root, *parts, la().archive_entry_perm(entry), name);
}

}  // namespace

Result<Compression> parse_compression(const std::string& name) {
  if (name == "none") return Compression::kNone;
  if (name == "gzip") return Compression::kGzip;
  if (name == "zstd") return Compression::kZstd;
  return Error(EINVAL, "unknown compression \"" + name + "\" (none, gzip or zstd)");
}

const char* layer_media_type(Compression c) {
  switch (c) {
    case Compression::kNone: return "application/vnd.oci.image.layer.v1.tar";
    case Compression::kGzip: return "application/vnd.oci.image.layer.v1.tar+gzip";
    case Compression::kZstd: return "application/vnd.oci.image.layer.v1.tar+zstd";
  }
  return "";
}

Status write_tar(const std::string& path, const std::vector<ArchiveEntry>& entries, Compression compression) {
  CRYO_TRY(dyn::libarchive());
  ArchivePtr a(la().archive_write_new());
  if (!a) return Error(ENOMEM, "archive_write_new");
  la().archive_write_set_format_pax_restricted(a.get());
  int rc = ARCHIVE_OK;
  if (compression == Compression::kGzip) rc = la().archive_write_add_filter_gzip(a.get());
  if (compression == Compression::kZstd) {
    rc = la().archive_write_add_filter_zstd(a.get());
    // Several threads when the library can (libarchive 3.6 and later): a
    // checkpoint is mostly memory pages, and compressing them is the slow part.
    if (rc == ARCHIVE_OK) la().archive_write_set_filter_option(a.get(), "zstd", "threads", "0");
  }
  if (rc != ARCHIVE_OK) return archive_failure(a.get(), "compressing " + path);
  if (la().archive_write_open_filename(a.get(), path.c_str()) != ARCHIVE_OK)
    return archive_failure(a.get(), "creating " + path);
  for (const auto& e : entries) CRYO_TRY(add_tree(a.get(), e.name, e.source).wrap("packing " + path));
  if (la().archive_write_close(a.get()) != ARCHIVE_OK) return archive_failure(a.get(), "writing " + path);
  return {};
}

Result<std::string> uncompressed_digest(const std::string& path) {
  CRYO_TRY(dyn::libarchive());
  ArchivePtr a(la().archive_read_new());
  if (!a) return Error(ENOMEM, "archive_read_new");
  la().archive_read_support_filter_all(a.get());
  la().archive_read_support_format_raw(a.get());
  if (la().archive_read_open_filename(a.get(), path.c_str(), 1 << 16) != ARCHIVE_OK) return archive_failure(a.get(), path);
  struct archive_entry* entry = nullptr;
  CRYO_ASSIGN(Sha256 hash, Sha256::start());
  if (la().archive_read_next_header(a.get(), &entry) == ARCHIVE_OK) {
    char buf[1 << 16];
    for (;;) {
      la_ssize_t n = la().archive_read_data(a.get(), buf, sizeof buf);
      if (n < 0) return archive_failure(a.get(), path);
      if (n == 0) break;
      hash.update(buf, static_cast<size_t>(n));
    }
  }
  return hash.finish();
}

Status extract_tar(const std::string& path, const std::string& dir) {
  CRYO_TRY(dyn::libarchive());
  auto root = open_file(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (!root.ok()) return std::move(root).error();
  ArchivePtr a(la().archive_read_new());
  if (!a) return Error(ENOMEM, "archive_read_new");
  la().archive_read_support_filter_all(a.get());
  la().archive_read_support_format_tar(a.get());
  if (la().archive_read_open_filename(a.get(), path.c_str(), 1 << 16) != ARCHIVE_OK)
    return archive_failure(a.get(), path);
  for (;;) {
    struct archive_entry* entry = nullptr;
    int rc = la().archive_read_next_header(a.get(), &entry);
    if (rc == ARCHIVE_EOF) return {};
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) return archive_failure(a.get(), path);
    CRYO_TRY(extract_entry(a.get(), entry, root->get()).wrap(path));
  }
}

}  // namespace cryo::oci::image
