#include "tests/fuzz/bundle.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <map>
#include <memory>

#include "core/image/image.h"
#include "core/image/proto/files.pb.h"
#include "core/image/proto/inventory.pb.h"
#include "core/image/proto/mm.pb.h"
#include "core/image/proto/task.pb.h"
#include "core/image/proto/tree.pb.h"
#include "core/sys/io.h"

namespace cryo::fuzz {
namespace {

bool plain_name(std::string_view name) {
  if (name.empty() || name.size() > 64 || name[0] == '.') return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) return false;
  return true;
}

// The header pages.img starts with, taken from the image layer's own
// framing (an empty message file of kind pages starts with it), padded.
const std::string& pages_header() {
  static const std::string header = [] {
    std::string h = image::encode(image::Kind::kPages, {}).substr(0, image::kHeaderSize);
    h.resize(image::kPagesDataOffset, '\0');
    return h;
  }();
  return header;
}

Status clear_dir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return errno_error("opendir " + dir);
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d))
    if (std::string_view(e->d_name) != "." && std::string_view(e->d_name) != "..") names.emplace_back(e->d_name);
  ::closedir(d);
  for (const auto& name : names)
    if (::unlink((dir + "/" + name).c_str()) < 0) return errno_error("unlink " + dir + "/" + name);
  return {};
}

// Replaces whatever has the name (a FIFO there would block the open).
Status write_whole(const std::string& path, std::string_view bytes) {
  if (::unlink(path.c_str()) < 0 && errno != ENOENT) return errno_error("unlink " + path);
  CRYO_ASSIGN(UniqueFd fd, open_file(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  return write_all(fd.get(), bytes).wrap("write " + path);
}

// A file of a bundle type other than regular; false for an unknown type.
Result<bool> make_special(const std::string& path, std::string_view type) {
  if (type != "fifo" && type != "devzero") return false;
  if (::unlink(path.c_str()) < 0 && errno != ENOENT) return errno_error("unlink " + path);
  if (type == "fifo" && ::mkfifo(path.c_str(), 0600) < 0) return errno_error("mkfifo " + path);
  if (type == "devzero" && ::symlink("/dev/zero", path.c_str()) < 0) return errno_error("symlink " + path);
  return true;
}

}  // namespace

std::optional<image::Kind> kind_of(std::string_view name) {
  if (name == image::kInventoryName) return image::Kind::kInventory;
  if (name == image::kTreeName) return image::Kind::kTree;
  if (name == image::kFilesName) return image::Kind::kFiles;
  if (name == image::kPagesName) return image::Kind::kPages;
  if (name.starts_with("core-")) return image::Kind::kCore;
  if (name.starts_with("mm-")) return image::Kind::kMm;
  return std::nullopt;
}

std::unique_ptr<google::protobuf::MessageLite> new_message(image::Kind kind) {
  switch (kind) {
    case image::Kind::kInventory: return std::make_unique<image::Inventory>();
    case image::Kind::kTree: return std::make_unique<image::Tree>();
    case image::Kind::kFiles: return std::make_unique<image::Files>();
    case image::Kind::kCore: return std::make_unique<image::Process>();
    case image::Kind::kMm: return std::make_unique<image::Mm>();
    case image::Kind::kPages: break;
  }
  return nullptr;
}

std::vector<BundleFile> split_bundle(std::string_view bytes) {
  std::vector<BundleFile> files;
  for (;;) {
    size_t end = bytes.find(kSeparator);
    std::string_view file = bytes.substr(0, end);
    size_t newline = file.find('\n');
    if (newline != std::string_view::npos) {
      std::string_view head = file.substr(0, newline);
      size_t space = head.find(' ');
      std::string_view type = space == std::string_view::npos ? "" : head.substr(space + 1);
      files.push_back({std::string(head.substr(0, space)), std::string(file.substr(newline + 1)), std::string(type)});
    }
    if (end == std::string_view::npos) return files;
    bytes.remove_prefix(end + kSeparator.size());
  }
}

std::string join_bundle(const std::vector<BundleFile>& files) {
  std::string out;
  for (const auto& f : files) {
    if (!out.empty()) out += kSeparator;
    out += f.name + (f.type.empty() ? "" : " " + f.type) + "\n" + f.body;
  }
  return out;
}

Status write_bundle(const std::vector<BundleFile>& files, const std::string& dir) {
  CRYO_TRY(clear_dir(dir));
  std::map<std::string, uint64_t> written;  // name -> size
  std::optional<image::Inventory> inventory;
  for (const auto& f : files) {
    if (!plain_name(f.name)) continue;
    std::optional<image::Kind> kind = kind_of(f.name);
    if (!f.type.empty()) {
      CRYO_ASSIGN(bool made, make_special(dir + "/" + f.name, f.type));
      if (!made) continue;
      if (kind == image::Kind::kInventory) inventory.reset();
      written[f.name] = 0;  // what stat says of both
      continue;
    }
    std::string bytes = f.body;
    if (kind == image::Kind::kPages) {
      bytes = pages_header() + f.body;
    } else if (kind) {
      auto message = new_message(*kind);
      bool parsed = message->ParseFromString(f.body);
      if (kind == image::Kind::kInventory) {
        // The last inventory wins; a parsed one is written at the end, once
        // the sizes of the other files are known.
        inventory.reset();
        if (parsed) {
          inventory = static_cast<const image::Inventory&>(*message);
          continue;
        }
      } else if (parsed) {
        bytes = image::encode(*kind, {message.get()});
      }
    }
    CRYO_TRY(write_whole(dir + "/" + f.name, bytes));
    written[f.name] = bytes.size();
  }
  if (inventory) {
    for (auto& listed : *inventory->mutable_files())
      if (auto it = written.find(listed.name()); it != written.end()) listed.set_size(it->second);
    CRYO_TRY(write_whole(dir + "/" + image::kInventoryName, image::encode(image::Kind::kInventory, {&*inventory})));
  }
  return {};
}

}  // namespace cryo::fuzz
