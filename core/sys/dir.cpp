#include "core/sys/dir.h"

#include <dirent.h>

#include <algorithm>

namespace cryo {

Result<std::vector<std::string>> sorted_names(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return errno_error("opendir " + dir);
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace cryo
