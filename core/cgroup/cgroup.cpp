#include "core/cgroup/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <sstream>
#include <thread>

#include "core/cgroup/device_filter.h"
#include "core/sys/io.h"
#include "core/sys/log.h"

namespace cryo::cgroup {
namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(s);
  while (std::getline(in, item, sep)) out.push_back(item);
  return out;
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

Status write_value(const std::string& path, const std::string& value) {
  CRYO_ASSIGN(UniqueFd fd, open_file(path, O_WRONLY | O_CLOEXEC));
  return write_all(fd.get(), value).wrap("write '" + value + "' to " + path);
}

Status mkdir_p(const std::string& path) {
  std::string current;
  for (auto& part : split(path, '/')) {
    if (part.empty()) continue;
    current += "/" + part;
    if (::mkdir(current.c_str(), 0755) < 0 && errno != EEXIST) return errno_error("mkdir " + current);
  }
  return {};
}

// cpuset v1 children start with empty cpus/mems; copy the parent's down the path.
Status fill_cpuset(const std::string& mount, const std::string& path) {
  std::string dir = mount;
  for (auto& part : split(path, '/')) {
    if (part.empty()) continue;
    std::string parent = dir;
    dir += "/" + part;
    for (const char* file : {"cpuset.cpus", "cpuset.mems"}) {
      CRYO_ASSIGN(std::string mine, read_file(dir + "/" + file));
      if (mine.find_first_not_of(" \n") != std::string::npos) continue;
      CRYO_ASSIGN(std::string theirs, read_file(parent + "/" + file));
      CRYO_TRY(write_value(dir + "/" + file, theirs));
    }
  }
  return {};
}

}  // namespace

std::vector<Hierarchy> parse_hierarchies(const std::string& mountinfo) {
  std::vector<Hierarchy> out;
  std::istringstream in(mountinfo);
  std::string line;
  while (std::getline(in, line)) {
    size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    auto left = split(line.substr(0, dash), ' ');
    auto right = split(line.substr(dash + 3), ' ');
    if (left.size() < 5 || right.size() < 3) continue;
    if (right[0] == "cgroup2") {
      out.push_back({left[4], {}, true});
    } else if (right[0] == "cgroup") {
      Hierarchy h{left[4], {}, false};
      for (auto& opt : split(right[2], ',')) {
        if (opt == "rw" || opt == "ro" || opt.starts_with("release_agent") || opt == "clone_children" ||
            opt == "noprefix" || opt == "xattr" || opt == "cpuset_v2_mode")
          continue;
        h.controllers.push_back(opt);
      }
      out.push_back(h);
    }
  }
  return out;
}

Result<std::vector<Hierarchy>> host_hierarchies() {
  CRYO_ASSIGN(std::string text, read_file("/proc/self/mountinfo"));
  std::vector<Hierarchy> all;
  // The same hierarchy may be mounted more than once (bind mounts): keep the first.
  for (auto& h : parse_hierarchies(text)) {
    bool seen = false;
    for (auto& other : all) seen = seen || (other.v2 == h.v2 && other.controllers == h.controllers);
    if (!seen) all.push_back(h);
  }
  if (all.empty()) return Error(ENOENT, "no cgroup filesystem is mounted");
  return all;
}

Mode mode_of(const std::vector<Hierarchy>& hierarchies) {
  bool v1 = false, v2 = false;
  for (auto& h : hierarchies) (h.v2 ? v2 : v1) = true;
  if (!v1) return Mode::kUnified;
  return v2 ? Mode::kHybrid : Mode::kLegacy;
}

std::optional<std::string> Group::dir_for(const std::string& controller) const {
  for (auto& h : hierarchies_) {
    if (controller.empty() ? h.v2 : false) return h.mount_point + path_;
    for (auto& c : h.controllers)
      if (c == controller) return h.mount_point + path_;
  }
  // On pure v2 every controller lives in the one hierarchy.
  if (mode_of(hierarchies_) == Mode::kUnified && !hierarchies_.empty()) return hierarchies_[0].mount_point + path_;
  return std::nullopt;
}

std::string Group::v2_root() const {
  for (auto& h : hierarchies_)
    if (h.v2) return h.mount_point;
  return "";
}

std::vector<std::string> Group::dirs() const {
  std::vector<std::string> out;
  for (auto& h : hierarchies_) out.push_back(h.mount_point + path_);
  return out;
}

Status Group::create() {
  for (auto& h : hierarchies_) {
    if (!h.v2 && h.controllers.empty()) continue;
    CRYO_TRY(mkdir_p(h.mount_point + path_).wrap("creating cgroup"));
    for (auto& c : h.controllers)
      if (c == "cpuset") CRYO_TRY(fill_cpuset(h.mount_point, path_).wrap("cgroup " + path_));
  }
  if (mode_of(hierarchies_) == Mode::kUnified) {
    // Enable the parent's controllers down the path so that limits can be set.
    const std::string& root = hierarchies_[0].mount_point;
    auto parts = split(path_, '/');
    std::string dir = root;
    for (size_t i = 0; i < parts.size(); i++) {
      if (parts[i].empty()) continue;
      auto controllers = read_file(dir + "/cgroup.controllers");
      if (controllers.ok()) {
        std::string enable;
        for (auto& c : split(*controllers, ' ')) {
          std::string name = c;
          while (!name.empty() && (name.back() == '\n')) name.pop_back();
          if (!name.empty()) enable += "+" + name + " ";
        }
        // Best effort: a parent with processes of its own cannot enable controllers.
        if (!enable.empty()) (void)write_value(dir + "/cgroup.subtree_control", enable);
      }
      dir += "/" + parts[i];
    }
  }
  return {};
}

Status Group::add_process(pid_t pid) {
  for (auto& h : hierarchies_) {
    if (!h.v2 && h.controllers.empty()) continue;
    CRYO_TRY(write_value(h.mount_point + path_ + "/cgroup.procs", std::to_string(pid)).wrap("joining cgroup"));
  }
  return {};
}

Status Group::apply(const Resources& r) {
  if (mode_of(hierarchies_) == Mode::kUnified) {
    std::string dir = hierarchies_[0].mount_point + path_;
    CRYO_TRY(apply_v2(dir, r));
    if (!r.devices.empty()) CRYO_TRY(attach_device_filter(dir, r.devices));
    return {};
  }
  // Hybrid: a controller only the cgroup2 mount offers (hugetlb on this kind of host) is set there.
  Resources v1 = r;
  auto v2_dir = dir_for("");
  if (v2_dir && !r.hugepage_limits.empty() && !dir_for("hugetlb")) {
    auto offered = read_file(v2_root() + "/cgroup.controllers");
    if (offered.ok() && offered->find("hugetlb") != std::string::npos) {
      Resources huge;
      huge.hugepage_limits = r.hugepage_limits;
      CRYO_TRY(apply_v2(*v2_dir, huge).wrap("cgroup " + path_ + " (hugetlb on cgroup v2)"));
      v1.hugepage_limits.clear();
    }
  }
  CRYO_ASSIGN(auto files, v1_files(v1));
  for (auto& [controller, file, value] : files) {
    auto dir = dir_for(controller);
    if (!dir) return Error(ENOENT, "cgroup controller '" + controller + "' is not mounted (needed for " + file + ")");
    if (file == "memory.memsw.limit_in_bytes" && !exists(*dir + "/" + file))
      return Error(ENOENT, "memory.swap is set but this kernel has no swap accounting (memory.memsw.limit_in_bytes)");
    CRYO_TRY(write_value(*dir + "/" + file, value).wrap("cgroup " + path_));
  }
  return {};
}

Status apply_v2(const std::string& dir, const Resources& r) {
  CRYO_ASSIGN(auto files, v2_files(r));
  for (auto& [file, value] : files) {
    std::string path = dir + "/" + file;
    if (!exists(path))
      return Error(ENOENT, "cgroup v2 file " + file + " does not exist in " + dir + " (controller '" +
                               file.substr(0, file.find('.')) + "' not enabled?)");
    CRYO_TRY(write_value(path, value));
  }
  return {};
}

Result<std::vector<pid_t>> Group::processes() const {
  auto dir = dir_for("pids");
  if (!dir) dir = dir_for("freezer");
  if (!dir) dir = dir_for("");
  if (!dir) dir = dirs().empty() ? std::nullopt : std::optional<std::string>(dirs()[0]);
  if (!dir) return Error(ENOENT, "cgroup " + path_ + " has no directory");
  CRYO_ASSIGN(std::string text, read_file(*dir + "/cgroup.procs"));
  std::vector<pid_t> pids;
  for (auto& line : split(text, '\n'))
    if (!line.empty()) pids.push_back(static_cast<pid_t>(std::strtol(line.c_str(), nullptr, 10)));
  return pids;
}

Status Group::freeze() {
  if (auto dir = dir_for("freezer"); dir && mode_of(hierarchies_) != Mode::kUnified) {
    CRYO_TRY(write_value(*dir + "/freezer.state", "FROZEN"));
    for (int i = 0; i < 1000; i++) {
      CRYO_ASSIGN(std::string state, read_file(*dir + "/freezer.state"));
      if (state.starts_with("FROZEN")) return {};
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    (void)write_value(*dir + "/freezer.state", "THAWED");
    return Error(EBUSY, "cgroup " + path_ + " did not freeze");
  }
  auto dir = dir_for("");
  if (!dir) return Error(ENOENT, "no freezer for cgroup " + path_);
  return write_value(*dir + "/cgroup.freeze", "1");
}

Status Group::thaw() {
  if (auto dir = dir_for("freezer"); dir && mode_of(hierarchies_) != Mode::kUnified)
    return write_value(*dir + "/freezer.state", "THAWED");
  auto dir = dir_for("");
  if (!dir) return Error(ENOENT, "no freezer for cgroup " + path_);
  return write_value(*dir + "/cgroup.freeze", "0");
}

Result<bool> Group::frozen() const {
  if (auto dir = dir_for("freezer"); dir && mode_of(hierarchies_) != Mode::kUnified) {
    CRYO_ASSIGN(std::string state, read_file(*dir + "/freezer.state"));
    return !state.starts_with("THAWED");
  }
  auto dir = dir_for("");
  if (!dir) return false;
  CRYO_ASSIGN(std::string value, read_file(*dir + "/cgroup.freeze"));
  return value.starts_with("1");
}

Status Group::signal_all(int signal) {
  auto v2 = dir_for("");
  if (signal == SIGKILL && v2 && exists(*v2 + "/cgroup.kill")) {
    // Kill the whole v2 group atomically; v1 tasks are in the same group.
    if (mode_of(hierarchies_) == Mode::kUnified || !dir_for("freezer")) return write_value(*v2 + "/cgroup.kill", "1");
  }
  CRYO_ASSIGN(auto pids, processes());
  for (pid_t pid : pids)
    if (::kill(pid, signal) < 0 && errno != ESRCH) return errno_error("kill " + std::to_string(pid));
  return {};
}

Status Group::destroy() {
  Status result;
  for (auto& h : hierarchies_) {
    if (!h.v2 && h.controllers.empty()) continue;
    std::string dir = h.mount_point + path_;
    if (!exists(dir)) continue;
    bool removed = false;
    for (int i = 0; i < 200 && !removed; i++) {
      if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) removed = true;
      else if (errno == EBUSY) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      else break;
    }
    if (!removed && result.ok()) result = errno_error("rmdir " + dir);
  }
  return result;
}

std::map<std::string, uint64_t> Group::stats() const {
  std::map<std::string, uint64_t> out;
  auto number = [&](const std::optional<std::string>& dir, const std::string& file, const std::string& key) {
    if (!dir) return;
    auto text = read_file(*dir + "/" + file);
    if (text.ok() && !text->empty() && isdigit(static_cast<unsigned char>((*text)[0]))) out[key] = std::strtoull(text->c_str(), nullptr, 10);
  };
  bool unified = mode_of(hierarchies_) == Mode::kUnified;
  number(dir_for("memory"), unified ? "memory.current" : "memory.usage_in_bytes", "memory.usage");
  number(dir_for("memory"), unified ? "memory.max" : "memory.limit_in_bytes", "memory.limit");
  number(dir_for("memory"), unified ? "memory.peak" : "memory.max_usage_in_bytes", "memory.max_usage");
  // OOM kills: "oom_kill N" in memory.oom_control (v1) or memory.events (v2).
  if (auto dir = dir_for("memory")) {
    auto text = read_file(*dir + (unified ? "/memory.events" : "/memory.oom_control"));
    if (text.ok())
      for (auto& line : split(*text, '\n'))
        if (line.starts_with("oom_kill ")) out["memory.oom_kill"] = std::strtoull(line.c_str() + 9, nullptr, 10);
  }
  number(dir_for("pids"), "pids.current", "pids.current");
  number(dir_for("pids"), "pids.max", "pids.limit");
  number(dir_for("cpuacct"), "cpuacct.usage", "cpu.usage.total");
  if (unified) {
    auto text = dir_for("cpu") ? read_file(*dir_for("cpu") + "/cpu.stat") : Result<std::string>(Error("none"));
    if (text.ok())
      for (auto& line : split(*text, '\n'))
        if (line.starts_with("usage_usec ")) out["cpu.usage.total"] = std::strtoull(line.c_str() + 11, nullptr, 10) * 1000;
  }
  return out;
}

Status make_path(const Hierarchy& h, const std::string& path, std::vector<std::string>* created) {
  bool cpuset = std::find(h.controllers.begin(), h.controllers.end(), "cpuset") != h.controllers.end();
  std::string dir = h.mount_point;
  for (size_t pos = 1; pos <= path.size();) {
    size_t slash = path.find('/', pos);
    if (slash == std::string::npos) slash = path.size();
    if (slash > pos) {
      std::string parent = dir;
      dir += "/" + path.substr(pos, slash - pos);
      if (::mkdir(dir.c_str(), 0755) == 0) {
        created->push_back(dir);
        if (cpuset)
          for (const char* file : {"cpuset.cpus", "cpuset.mems"}) {
            CRYO_ASSIGN(std::string value, read_file(parent + "/" + file));
            CRYO_ASSIGN(UniqueFd fd, open_file(dir + "/" + file, O_WRONLY | O_CLOEXEC));
            CRYO_TRY(write_all(fd.get(), value).wrap(dir + "/" + file));
          }
      } else if (errno != EEXIST) {
        return errno_error("mkdir " + dir);
      }
    }
    pos = slash + 1;
  }
  return {};
}


}  // namespace cryo::cgroup
