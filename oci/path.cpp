#include "oci/path.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

namespace cryo::oci {
namespace {

std::vector<std::string> components(const std::string& path) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    if (end > start) out.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace

Result<std::string> secure_join(const std::string& rootfs, const std::string& path) {
  std::vector<std::string> resolved;
  std::vector<std::string> pending = components(path);
  std::reverse(pending.begin(), pending.end());  // a stack: back() is the next component
  int links = 0;
  while (!pending.empty()) {
    std::string part = pending.back();
    pending.pop_back();
    if (part == ".") continue;
    if (part == "..") {
      if (!resolved.empty()) resolved.pop_back();  // ".." stops at the rootfs
      continue;
    }
    std::string current = rootfs;
    for (auto& r : resolved) current += "/" + r;
    current += "/" + part;
    struct stat st;
    if (::lstat(current.c_str(), &st) < 0 || !S_ISLNK(st.st_mode)) {
      resolved.push_back(part);
      continue;
    }
    if (++links > 255) return Error(ELOOP, "too many symlinks resolving " + path + " in " + rootfs);
    char target[4096];
    ssize_t n = ::readlink(current.c_str(), target, sizeof target - 1);
    if (n < 0) return errno_error("readlink " + current);
    std::string link(target, static_cast<size_t>(n));
    if (link.starts_with("/")) resolved.clear();
    auto more = components(link);
    for (auto it = more.rbegin(); it != more.rend(); ++it) pending.push_back(*it);
  }
  std::string out = rootfs;
  for (auto& r : resolved) out += "/" + r;
  return out;
}

}  // namespace cryo::oci
