#include "oci/image/rootfs_diff.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "core/files/mounts.h"
#include "core/sys/dir.h"
#include "core/sys/io.h"
#include "oci/image/dynlib.h"

namespace cryo::oci::image {
namespace {

using nlohmann::json;

// libarchive, which the entry points below have loaded first.
const dyn::LibArchive& la() { return **dyn::libarchive(); }

struct ArchiveDeleter {
  void operator()(struct archive* a) const {
    if (a) la().archive_free(a);
  }
};
using ArchivePtr = std::unique_ptr<struct archive, ArchiveDeleter>;
struct EntryDeleter {
  void operator()(struct archive_entry* e) const { la().archive_entry_free(e); }
};
using EntryPtr = std::unique_ptr<struct archive_entry, EntryDeleter>;

Error archive_failure(struct archive* a, const std::string& what) {
  const char* text = la().archive_error_string(a);
  return Error(la().archive_errno(a) > 0 ? la().archive_errno(a) : EIO, what + ": " + (text ? text : "libarchive failed"));
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

bool is_dir(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// An overlay's private attribute of a directory of its upper layer ("" if unset).
std::string overlay_xattr(const std::string& path, const char* name) {
  char value[256];
  ssize_t n = ::lgetxattr(path.c_str(), name, value, sizeof value);
  return n > 0 ? std::string(value, static_cast<size_t>(n)) : "";
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t at = text.find(sep); at != std::string::npos; at = text.find(sep, start)) {
    out.push_back(text.substr(start, at - start));
    start = at + 1;
  }
  out.push_back(text.substr(start));
  return out;
}

// Walks the upper layer: every path it holds goes into the diff, read through
// the merged rootfs (so a metacopy-only upper file brings its real contents);
// whiteouts and what an opaque directory hides become deletions.
class DiffWriter {
 public:
  DiffWriter(const std::string& merged, const OverlayLayers& layers, struct archive* a)
      : merged_(merged), layers_(layers), a_(a) {}

  Status walk(const std::string& rel) {
    std::string upper_dir = layers_.upper + (rel.empty() ? "" : "/" + rel);
    auto names = sorted_names(upper_dir);
    if (!names.ok()) return std::move(names).error();
    for (const auto& name : *names) {
      std::string path = rel.empty() ? name : rel + "/" + name;
      std::string upper = layers_.upper + "/" + path;
      struct stat st;
      if (::lstat(upper.c_str(), &st) < 0) return errno_error("stat " + upper);
      if (S_ISCHR(st.st_mode) && st.st_rdev == 0) {  // a whiteout: removed from the lower layers
        deleted_.insert("/" + path);
        continue;
      }
      if (!S_ISDIR(st.st_mode)) {
        CRYO_TRY(add_merged(path, false));
        continue;
      }
      bool opaque = overlay_xattr(upper, "trusted.overlay.opaque") == "y";
      bool redirected = !overlay_xattr(upper, "trusted.overlay.redirect").empty();
      bool in_lower = false;
      for (const auto& lower : layers_.lowers) in_lower |= is_dir(lower + "/" + path);
      if (opaque) CRYO_TRY(hidden_by_opaque(path));
      if (!in_lower || opaque || redirected) {
        CRYO_TRY(add_merged(path, true));  // the whole directory as the container sees it
      } else {
        CRYO_TRY(add_entry(path));
        CRYO_TRY(walk(path));
      }
    }
    return {};
  }

  const std::set<std::string>& deleted() const { return deleted_; }
  size_t written() const { return written_; }

 private:
  // What the lower layers hold in a directory the container emptied and made
  // again: gone, unless made anew.
  Status hidden_by_opaque(const std::string& path) {
    for (const auto& lower : layers_.lowers) {
      std::string dir = lower + "/" + path;
      if (!is_dir(dir)) continue;
      auto names = sorted_names(dir);
      if (!names.ok()) return std::move(names).error();
      for (const auto& name : *names)
        if (!exists(merged_ + "/" + path + "/" + name)) deleted_.insert("/" + path + "/" + name);
    }
    return {};
  }

  Status add_merged(const std::string& path, bool recursive) {
    CRYO_TRY(add_entry(path));
    std::string full = merged_ + "/" + path;
    if (!recursive || !is_dir(full)) return {};
    auto names = sorted_names(full);
    if (!names.ok()) return std::move(names).error();
    for (const auto& name : *names) CRYO_TRY(add_merged(path + "/" + name, true));
    return {};
  }

  // One entry, its metadata and contents as the merged rootfs shows them.
  Status add_entry(const std::string& path) {
    std::string full = merged_ + "/" + path;
    struct stat st;
    if (::lstat(full.c_str(), &st) < 0) return errno_error("stat " + full);
    EntryPtr entry(la().archive_entry_new());
    la().archive_entry_copy_stat(entry.get(), &st);
    la().archive_entry_set_pathname(entry.get(), path.c_str());
    if (S_ISLNK(st.st_mode)) {
      auto target = read_link(full);
      if (!target.ok()) return std::move(target).error();
      la().archive_entry_set_symlink(entry.get(), target->c_str());
    }
    if (!S_ISREG(st.st_mode)) la().archive_entry_set_size(entry.get(), 0);
    CRYO_TRY(add_xattrs(entry.get(), full));
    if (la().archive_write_header(a_, entry.get()) != ARCHIVE_OK) return archive_failure(a_, "tar header of " + path);
    written_++;
    if (S_ISREG(st.st_mode)) CRYO_TRY(copy_contents(full, st.st_size));
    return {};
  }

  // File capabilities, ACLs and user attributes travel; the overlay's own do not.
  Status add_xattrs(struct archive_entry* entry, const std::string& full) {
    ssize_t size = ::llistxattr(full.c_str(), nullptr, 0);
    if (size <= 0) return {};
    std::string list(static_cast<size_t>(size), '\0');
    size = ::llistxattr(full.c_str(), list.data(), list.size());
    if (size < 0) return errno_error("listxattr " + full);
    for (const auto& name : split(list.substr(0, static_cast<size_t>(size)), '\0')) {
      if (name.empty() || name.starts_with("trusted.overlay.")) continue;
      ssize_t n = ::lgetxattr(full.c_str(), name.c_str(), nullptr, 0);
      if (n < 0) continue;
      std::string value(static_cast<size_t>(n), '\0');
      n = ::lgetxattr(full.c_str(), name.c_str(), value.data(), value.size());
      if (n >= 0) la().archive_entry_xattr_add_entry(entry, name.c_str(), value.data(), static_cast<size_t>(n));
    }
    return {};
  }

  Status copy_contents(const std::string& full, off_t size) {
    auto fd = open_file(full, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (!fd.ok()) return std::move(fd).error();
    char buf[1 << 16];
    off_t left = size;
    while (left > 0) {
      ssize_t n = ::read(fd->get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_error("read " + full);
      if (n == 0) return Error(EIO, full + " shrank while being packed");
      n = std::min<ssize_t>(n, left);
      if (la().archive_write_data(a_, buf, static_cast<size_t>(n)) != n) return archive_failure(a_, "packing " + full);
      left -= n;
    }
    return {};
  }

  std::string merged_;
  const OverlayLayers& layers_;
  struct archive* a_;
  std::set<std::string> deleted_;
  size_t written_ = 0;
};

// A name of deleted.files as a path below the rootfs, refused when it could
// lead anywhere else.
Result<std::string> deleted_path(const json& item) {
  if (!item.is_string()) return Error(EINVAL, "deleted.files holds a non-string entry " + item.dump());
  std::string name = item.get<std::string>();
  std::string rel;
  for (const auto& part : split(name, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") return Error(EINVAL, "deleted.files entry \"" + name + "\" climbs out with ..");
    rel += (rel.empty() ? "" : "/") + part;
  }
  if (rel.empty()) return Error(EINVAL, "deleted.files entry \"" + name + "\" names the root");
  return rel;
}

Result<std::vector<std::string>> read_deleted(const std::string& file) {
  auto text = read_file(file);
  if (!text.ok()) return std::move(text).error();
  std::vector<std::string> out;
  try {
    json list = json::parse(*text);
    if (!list.is_array()) return Error(EINVAL, file + " is not a JSON array");
    for (const auto& item : list) {
      auto path = deleted_path(item);
      if (!path.ok()) return std::move(path).error();
      out.push_back(*path);
    }
  } catch (const json::exception& e) {
    return Error(EINVAL, file + ": " + e.what());
  }
  return out;
}

// In the chrooted child: the deletions, then the diff.
std::string apply_in_root(const std::vector<std::string>& deleted, int tar_fd) {
  for (const auto& path : deleted) {
    std::error_code ec;
    std::filesystem::remove_all("/" + path, ec);  // a symlink goes, not what it points to
    if (ec) return "removing /" + path + " (deleted.files): " + ec.message();
  }
  if (tar_fd < 0) return "";
  ArchivePtr in(la().archive_read_new());
  ArchivePtr out(la().archive_write_disk_new());
  if (!in || !out) return "out of memory";
  la().archive_read_support_filter_all(in.get());
  la().archive_read_support_format_tar(in.get());
  la().archive_write_disk_set_options(out.get(), ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
                                                ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_ACL | ARCHIVE_EXTRACT_UNLINK |
                                                ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                                ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS);
  if (la().archive_read_open_fd(in.get(), tar_fd, 1 << 16) != ARCHIVE_OK)
    return std::string(kRootfsDiffTar) + ": " + (la().archive_error_string(in.get()) ?: "unreadable");
  for (;;) {
    struct archive_entry* entry = nullptr;
    int rc = la().archive_read_next_header(in.get(), &entry);
    if (rc == ARCHIVE_EOF) break;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN)
      return std::string(kRootfsDiffTar) + ": " + (la().archive_error_string(in.get()) ?: "corrupt");
    const char* name = la().archive_entry_pathname(entry);
    std::string what = std::string(kRootfsDiffTar) + " entry \"" + (name ? name : "") + "\"";
    if (la().archive_write_header(out.get(), entry) != ARCHIVE_OK)
      return what + ": " + (la().archive_error_string(out.get()) ?: "refused");
    const void* block;
    size_t size;
    la_int64_t offset;
    while ((rc = la().archive_read_data_block(in.get(), &block, &size, &offset)) == ARCHIVE_OK)
      if (la().archive_write_data_block(out.get(), block, size, offset) != ARCHIVE_OK)
        return what + ": " + (la().archive_error_string(out.get()) ?: "write failed");
    if (rc != ARCHIVE_EOF) return what + ": " + (la().archive_error_string(in.get()) ?: "truncated");
    if (la().archive_write_finish_entry(out.get()) != ARCHIVE_OK)
      return what + ": " + (la().archive_error_string(out.get()) ?: "write failed");
  }
  if (la().archive_write_close(out.get()) != ARCHIVE_OK) return la().archive_error_string(out.get()) ?: "write failed";
  return "";
}

}  // namespace

Result<std::optional<OverlayLayers>> overlay_at(const std::string& rootfs) {
  char real[PATH_MAX];
  if (!::realpath(rootfs.c_str(), real)) return errno_error("rootfs " + rootfs);
  auto text = read_file("/proc/self/mountinfo");
  if (!text.ok()) return std::move(text).error();
  std::optional<OverlayLayers> found;
  for (const auto& m : files::parse_mountinfo(*text)) {
    if (m.mount_point != real) continue;
    found.reset();  // the last mount there is the one seen
    if (m.fstype != "overlay") continue;
    OverlayLayers layers;
    for (const auto& option : split(m.super_options, ',')) {
      if (option.starts_with("upperdir=")) layers.upper = option.substr(9);
      if (option.starts_with("lowerdir=")) {
        for (const auto& l : split(option.substr(9), ':'))
          if (!l.empty()) layers.lowers.push_back(l);
      }
      if (option.starts_with("lowerdir+=")) layers.lowers.push_back(option.substr(10));
    }
    if (!layers.upper.empty()) found = layers;  // a read-only overlay changes nothing
  }
  return found;
}

Result<std::vector<std::string>> write_rootfs_diff(const std::string& rootfs, const std::string& dir) {
  CRYO_TRY(dyn::libarchive());
  auto layers = overlay_at(rootfs);
  if (!layers.ok()) return std::move(layers).error();
  if (!*layers) return std::vector<std::string>{};
  char merged[PATH_MAX];
  if (!::realpath(rootfs.c_str(), merged)) return errno_error("rootfs " + rootfs);
  std::string tar_path = dir + "/" + kRootfsDiffTar;
  ArchivePtr a(la().archive_write_new());
  if (!a) return Error(ENOMEM, "archive_write_new");
  la().archive_write_set_format_pax_restricted(a.get());
  if (la().archive_write_open_filename(a.get(), tar_path.c_str()) != ARCHIVE_OK)
    return archive_failure(a.get(), "creating " + tar_path);
  DiffWriter writer(merged, **layers, a.get());
  CRYO_TRY(writer.walk("").wrap("the rootfs changes in " + (*layers)->upper));
  if (la().archive_write_close(a.get()) != ARCHIVE_OK) return archive_failure(a.get(), "writing " + tar_path);
  std::vector<std::string> names;
  if (writer.written() > 0) {
    names.push_back(kRootfsDiffTar);
  } else {
    ::unlink(tar_path.c_str());
  }
  if (!writer.deleted().empty()) {
    json list = json::array();
    for (const auto& path : writer.deleted()) list.push_back(path);
    CRYO_TRY(write_file_atomic(dir + "/" + kDeletedFiles, list.dump()));
    names.push_back(kDeletedFiles);
  }
  return names;
}

Status apply_rootfs_diff(const std::string& dir, const std::string& rootfs) {
  CRYO_TRY(dyn::libarchive());
  std::string tar_path = dir + "/" + kRootfsDiffTar;
  std::string deleted_file = dir + "/" + kDeletedFiles;
  bool has_tar = exists(tar_path), has_deleted = exists(deleted_file);
  if (!has_tar && !has_deleted) return {};
  std::vector<std::string> deleted;
  if (has_deleted) {
    auto list = read_deleted(deleted_file);
    if (!list.ok()) return std::move(list).error();
    deleted = std::move(*list);
  }
  UniqueFd tar;
  if (has_tar) {
    auto fd = open_file(tar_path, O_RDONLY | O_CLOEXEC);
    if (!fd.ok()) return std::move(fd).error();
    tar = std::move(*fd);
  }
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) < 0) return errno_error("pipe");
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  pid_t child = ::fork();
  if (child < 0) return errno_error("fork");
  if (child == 0) {
    std::string error;
    if (::chroot(rootfs.c_str()) < 0 || ::chdir("/") < 0)
      error = "chroot " + rootfs + ": " + strerror(errno);
    else
      error = apply_in_root(deleted, tar ? tar.get() : -1);
    if (!error.empty()) (void)!::write(write_end.get(), error.data(), error.size());
    ::_exit(error.empty() ? 0 : 1);
  }
  write_end = UniqueFd();
  auto message = read_fd(read_end.get());
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  std::string why = message.ok() && !message->empty() ? *message : "the unpacking child died";
  return Error(EINVAL, "applying the rootfs changes over " + rootfs + ": " + why);
}

}  // namespace cryo::oci::image
