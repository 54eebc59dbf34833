#include "core/files/mounts.h"

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

}  // namespace

std::string mount_of_dev(uint32_t sdev) {
  auto text = read_file("/proc/self/mountinfo");
  if (!text.ok()) return "";
  std::string want = std::to_string(sdev >> 20) + ":" + std::to_string(sdev & 0xfffff), found;
  each_mount(*text, [&](const std::vector<std::string_view>& f) {
    if (f[2] != want) return true;
    if (f[3] == "/") {
      found = unescape(f[4]);
      return false;
    }
    if (found.empty()) found = unescape(f[4]);
    return true;
  });
  return found;
}

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
