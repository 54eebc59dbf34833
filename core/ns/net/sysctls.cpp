// The namespace's sysctls: every file under /proc/sys/net that it can read
// and write, as it reads in the namespace (the calling thread's: /proc/sys/net
// answers for the namespace of whoever looks).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "core/ns/net/net_config.h"
#include "core/sys/io.h"
#include "core/sys/log.h"

namespace cryo::ns::net {
namespace {

constexpr const char* kRoot = "/proc/sys/net/";
constexpr int kMaxSysctls = 1 << 16;

Status walk(const std::string& rel, image::NetNs* out) {
  std::string dir_path = kRoot + rel;
  DIR* dir = ::opendir(dir_path.c_str());
  if (!dir) return errno_error("opendir " + dir_path);
  std::vector<std::pair<std::string, bool>> entries;
  while (auto* e = ::readdir(dir)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    entries.emplace_back(name, e->d_type == DT_DIR);
  }
  ::closedir(dir);
  std::sort(entries.begin(), entries.end());
  for (const auto& [name, is_dir] : entries) {
    std::string path = rel + name;
    if (is_dir) {
      CRYO_TRY(walk(path + "/", out));
      continue;
    }
    struct stat st;
    if (::stat((kRoot + path).c_str(), &st) < 0 || (st.st_mode & 0600) != 0600) continue;  // read-only or write-only
    auto value = read_file(kRoot + path);
    if (!value.ok()) continue;  // unset (stable_secret: EIO)
    if (out->sysctls_size() >= kMaxSysctls) return Error("too many sysctls under " + std::string(kRoot));
    auto* s = out->add_sysctls();
    s->set_name(path);
    s->set_value(*value);
  }
  return {};
}

// conf/all and conf/default change every device's: written first, so that a
// device's own value written after them stays.
bool goes_first(const std::string& name) {
  return name.find("/all/") != std::string::npos || name.find("/default/") != std::string::npos;
}

}  // namespace

Status dump_sysctls(image::NetNs* out) { return walk("", out); }

Status validate_sysctls(const image::NetNs& ns) {
  if (ns.sysctls_size() > kMaxSysctls) return Error(EINVAL, "too many sysctls");
  for (const auto& s : ns.sysctls()) {
    const std::string& n = s.name();
    bool bad = n.empty() || n.front() == '/' || n.back() == '/' || n.find('\0') != std::string::npos ||
               n.find("//") != std::string::npos || s.value().size() > 65536;
    for (size_t at = 0; !bad && at <= n.size();) {
      size_t slash = std::min(n.find('/', at), n.size());
      std::string part = n.substr(at, slash - at);
      bad = part == "." || part == "..";
      at = slash + 1;
    }
    if (bad) return Error(EINVAL, "sysctl '" + n + "': not a name under " + kRoot);
  }
  return {};
}

Status write_sysctls(const image::NetNs& ns, bool weak) {
  for (bool first : {true, false}) {
    for (const auto& s : ns.sysctls()) {
      if (goes_first(s.name()) != first) continue;
      std::string path = kRoot + s.name();
      auto now = read_file(path);
      if (now.ok() && *now == s.value()) continue;
      if (weak && ::access(path.c_str(), F_OK) < 0 && errno == ENOENT) {  // CRIU's --weak-sysctls
        log::warn("sysctl net." + s.name() + " is not in this kernel: not restored (--weak-sysctls)");
        continue;
      }
      CRYO_ASSIGN(UniqueFd fd, open_file(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW).wrap("sysctl net." + s.name()));
      std::string value = s.value();
      while (!value.empty() && value.back() == '\n') value.pop_back();
      if (::write(fd.get(), value.data(), value.size()) < 0)
        return errno_error("setting sysctl net." + s.name() + " to '" + value + "'");
    }
  }
  return {};
}

}  // namespace cryo::ns::net
