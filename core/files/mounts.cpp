#include "core/files/mounts.h"

#include <sys/sysmacros.h>

#include <string>
#include <vector>

#include "core/sys/io.h"

namespace cryo::files {
namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(std::string_view field) {
  std::string out;
  for (size_t i = 0; i < field.size(); i++) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      out += static_cast<char>(std::stoi(std::string(field.substr(i + 1, 3)), nullptr, 8));
      i += 3;
    } else {
      out += field[i];
    }
  }
  return out;
}

// The first five fields of each line: id, parent id, major:minor, root, mount point.
template <typename Visit>
void each_mount(std::string_view text, Visit visit) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::vector<std::string_view> fields;
    for (size_t i = pos; i < eol && fields.size() < 5;) {
      size_t sp = text.find(' ', i);
      if (sp == std::string_view::npos || sp > eol) sp = eol;
      fields.push_back(text.substr(i, sp - i));
      i = sp + 1;
    }
    pos = eol + 1;
    if (fields.size() == 5 && !visit(fields)) return;
  }
}

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  for (size_t i = 0; i < line.size();) {
    size_t sp = line.find(' ', i);
    if (sp == std::string_view::npos) sp = line.size();
    out.push_back(line.substr(i, sp - i));
    i = sp + 1;
  }
  return out;
}

}  // namespace

std::vector<MountInfo> parse_mountinfo(std::string_view text) {
  std::vector<MountInfo> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    auto w = words(text.substr(pos, eol - pos));
    pos = eol + 1;
    if (w.size() < 10) continue;
    MountInfo m;
    m.id = static_cast<uint32_t>(std::stoul(std::string(w[0])));
    m.parent = static_cast<uint32_t>(std::stoul(std::string(w[1])));
    m.dev = std::string(w[2]);
    m.root = unescape(w[3]);
    m.mount_point = unescape(w[4]);
    m.mount_options = std::string(w[5]);
    size_t i = 6;
    for (; i < w.size() && w[i] != "-"; i++) m.tags.emplace_back(w[i]);
    if (i + 2 >= w.size()) continue;  // no "- fstype source"
    m.fstype = std::string(w[i + 1]);
    m.source = unescape(w[i + 2]);
    m.super_options = i + 3 < w.size() ? std::string(w[i + 3]) : "";
    out.push_back(std::move(m));
  }
  return out;
}

std::vector<std::string> mounts_of_dev(uint32_t sdev, const std::string& mountinfo) {
  std::vector<std::string> found;
  auto text = read_file(mountinfo);
  if (!text.ok()) return found;
  std::string want = std::to_string(sdev >> 20) + ":" + std::to_string(sdev & 0xfffff);
  size_t of_root = 0;  // mounts of the filesystem's root first
  each_mount(*text, [&](const std::vector<std::string_view>& f) {
    if (f[2] != want) return true;
    if (f[3] == "/")
      found.insert(found.begin() + static_cast<long>(of_root++), unescape(f[4]));
    else
      found.push_back(unescape(f[4]));
    return true;
  });
  return found;
}

std::string mount_of_dev(uint32_t sdev, const std::string& mountinfo) {
  auto all = mounts_of_dev(sdev, mountinfo);
  return all.empty() ? "" : all.front();
}

TreeMount tree_mount_of_dev(uint32_t sdev, const std::string& tree_root) {
  TreeMount out;
  if (tree_root.empty()) {  // the tree shares cryo's mount namespace: its mounts stay
    out.mount_points = mounts_of_dev(sdev);
    return out;
  }
  std::string base = tree_root.substr(0, tree_root.rfind('/'));  // "/proc/PID"
  out.mount_points = mounts_of_dev(sdev, base + "/mountinfo");
  out.made_again = mount_of_dev(sdev).empty();
  return out;
}

uint32_t kernel_dev(uint64_t st_dev) { return (major(st_dev) << 20) | minor(st_dev); }

std::string mount_of_id(std::string_view mountinfo, uint64_t mnt_id) {
  std::string want = std::to_string(mnt_id), found;
  each_mount(mountinfo, [&](const std::vector<std::string_view>& f) {
    if (f[0] != want) return true;
    found = unescape(f[4]);
    return false;
  });
  return found;
}

}  // namespace cryo::files
