#include "core/cgroup/props.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <set>

#include "core/sys/io.h"

namespace cryo::cgroup {
namespace {

struct Known {
  const char* name;
  int rank;
};

// cpuset.cpus and cpuset.mems come first: a v1 cpuset without them takes no
// task, and the flags below may depend on them.
constexpr Known kV1[] = {
    {"cpuset.cpus", 0},
    {"cpuset.mems", 0},
    {"cpuset.cpu_exclusive", 1},
    {"cpuset.mem_exclusive", 1},
    {"cpuset.mem_hardwall", 1},
    {"cpuset.memory_migrate", 1},
    {"cpuset.memory_spread_page", 1},
    {"cpuset.memory_spread_slab", 1},
    {"cpuset.sched_load_balance", 1},
    {"memory.limit_in_bytes", 2},
    {"memory.memsw.limit_in_bytes", 2},
    {"memory.soft_limit_in_bytes", 2},
    {"memory.swappiness", 2},
    {"memory.oom_control", 2},
    {"cpu.shares", 2},
    {"cpu.cfs_period_us", 2},
    {"cpu.cfs_quota_us", 2},
    {"cpu.cfs_burst_us", 2},
    {"cpu.rt_period_us", 2},
    {"cpu.rt_runtime_us", 2},
    {"cpu.idle", 2},
    {"pids.max", 2},
    {"blkio.weight", 2},
    {"blkio.weight_device", 2},
    {"blkio.bfq.weight", 2},
    {"blkio.bfq.weight_device", 2},
    {"blkio.throttle.read_bps_device", 2},
    {"blkio.throttle.write_bps_device", 2},
    {"blkio.throttle.read_iops_device", 2},
    {"blkio.throttle.write_iops_device", 2},
    {"net_cls.classid", 2},
    {"devices.list", 2},
};

// cgroup.subtree_control first: the children's files appear only with it.
constexpr Known kV2[] = {
    {"cgroup.subtree_control", 0},
    {"cgroup.max.depth", 1},
    {"cgroup.max.descendants", 1},
    {"cpuset.cpus", 1},
    {"cpuset.mems", 1},
    {"memory.min", 2},
    {"memory.low", 2},
    {"memory.high", 2},
    {"memory.max", 2},
    {"memory.swap.high", 2},
    {"memory.swap.max", 2},
    {"memory.zswap.max", 2},
    {"memory.zswap.writeback", 2},
    {"memory.oom.group", 2},
    {"cpu.weight", 2},
    {"cpu.max", 2},
    {"cpu.max.burst", 2},
    {"cpu.idle", 2},
    {"cpu.uclamp.min", 2},
    {"cpu.uclamp.max", 2},
    {"pids.max", 2},
    {"io.weight", 2},
    {"io.bfq.weight", 2},
    {"io.max", 2},
    {"io.latency", 2},
};

// hugetlb.<size>.<suffix>, the size as the kernel names it ("2MB", "1GB").
bool is_hugetlb(std::string_view name, std::string_view suffix) {
  constexpr std::string_view prefix = "hugetlb.";
  if (!name.starts_with(prefix) || !name.ends_with(suffix) || name.size() <= prefix.size() + suffix.size()) return false;
  std::string_view size = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (size.size() < 3 || !size.ends_with("B")) return false;
  char unit = size[size.size() - 2];
  if (unit != 'K' && unit != 'M' && unit != 'G') return false;
  return std::all_of(size.begin(), size.end() - 2, [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  return std::string(s);
}

std::vector<std::string> lines_of(std::string_view text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string line = trim(text.substr(pos, eol - pos));
    if (!line.empty()) out.push_back(line);
    pos = eol + 1;
  }
  return out;
}

std::set<std::string> words_of(std::string_view text) {
  std::set<std::string> out;
  for (auto& line : lines_of(text)) {
    size_t pos = 0;
    while (pos < line.size()) {
      size_t sp = line.find(' ', pos);
      if (sp == std::string::npos) sp = line.size();
      if (sp > pos) out.insert(line.substr(pos, sp - pos));
      pos = sp + 1;
    }
  }
  return out;
}

Status write_text(const std::string& path, const std::string& text) {
  CRYO_ASSIGN(UniqueFd fd, open_file(path, O_WRONLY | O_CLOEXEC));
  return write_all(fd.get(), text).wrap("writing '" + text + "' to " + path);
}

}  // namespace

std::optional<int> prop_rank(bool v2, std::string_view name) {
  if (v2) {
    for (const auto& k : kV2)
      if (name == k.name) return k.rank;
    if (is_hugetlb(name, ".max") || is_hugetlb(name, ".rsvd.max")) return 2;
  } else {
    for (const auto& k : kV1)
      if (name == k.name) return k.rank;
    if (is_hugetlb(name, ".limit_in_bytes") || is_hugetlb(name, ".rsvd.limit_in_bytes")) return 2;
  }
  return std::nullopt;
}

std::string value_to_save(std::string_view name, std::string_view text) {
  if (name == "memory.oom_control") {
    // "oom_kill_disable 0\nunder_oom 0\noom_kill 3": only the first is a setting.
    for (auto& line : lines_of(text))
      if (line.starts_with("oom_kill_disable ")) return line.substr(17);
    return "";
  }
  auto lines = lines_of(text);
  std::string out;
  for (auto& line : lines) out += (out.empty() ? "" : "\n") + line;
  return out;
}

std::vector<std::pair<std::string, std::string>> writes_for(const Prop& prop, std::string_view current) {
  std::vector<std::pair<std::string, std::string>> out;
  if (prop.name == "cgroup.subtree_control") {
    auto have = words_of(current);
    for (auto& c : words_of(prop.value))
      if (!have.count(c)) out.push_back({prop.name, "+" + c});
    return out;
  }
  if (trim(current) == prop.value) return out;
  if (prop.name == "devices.list") {
    out.push_back({"devices.deny", "a"});
    for (auto& rule : lines_of(prop.value)) out.push_back({"devices.allow", rule});
    return out;
  }
  for (auto& line : lines_of(prop.value)) out.push_back({prop.name, line});
  return out;
}

Result<std::vector<Prop>> read_props(bool v2, const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return errno_error("opendir " + dir);
  std::vector<std::pair<int, std::string>> names;
  while (auto* e = ::readdir(d))
    if (auto rank = prop_rank(v2, e->d_name)) names.push_back({*rank, e->d_name});
  ::closedir(d);
  std::sort(names.begin(), names.end());
  std::vector<Prop> out;
  for (const auto& [rank, name] : names) {
    auto text = read_file(dir + "/" + name);
    if (!text.ok()) {
      // A file present but not readable here (a controller that refuses the
      // read on this kernel) holds nothing cryo could check or write back.
      if (text.error().code() == EOPNOTSUPP || text.error().code() == EINVAL) continue;
      return std::move(text).error().wrap(dir);
    }
    std::string value = value_to_save(name, *text);
    if (value.empty() && name != "cpuset.cpus" && name != "cpuset.mems") continue;
    out.push_back({name, value});
  }
  return out;
}

Status write_props(bool v2, const std::string& dir, const std::vector<Prop>& props) {
  std::vector<std::pair<std::string, std::string>> later;
  auto write_one = [&](const std::string& file, const std::string& text, bool last_try) -> Status {
    Status st = write_text(dir + "/" + file, text);
    if (!st.ok() && !last_try && (st.error().code() == EINVAL || st.error().code() == EBUSY)) {
      later.push_back({file, text});
      return {};
    }
    return st;
  };
  for (const auto& p : props) {
    if (!prop_rank(v2, p.name)) return Error(EINVAL, "cgroup file " + p.name + " is not one cryo restores");
    std::string current;
    if (auto text = read_file(dir + "/" + p.name); text.ok()) current = value_to_save(p.name, *text);
    else if (text.error().code() == ENOENT)
      return Error(ENOENT, dir + "/" + p.name + " does not exist here (its controller is missing or not enabled)");
    for (const auto& [file, text] : writes_for(p, current)) {
      // An empty cpuset value is the kernel's default for a fresh group: nothing to write.
      if (text.empty()) continue;
      CRYO_TRY(write_one(file, text, false));
    }
  }
  for (const auto& [file, text] : later) CRYO_TRY(write_one(file, text, true));
  return {};
}

std::vector<std::string> controllers_needed(const std::vector<Prop>& props) {
  std::vector<std::string> out;
  for (const auto& p : props) {
    std::string controller = p.name.substr(0, p.name.find('.'));
    if (controller == "cgroup") continue;
    if (std::find(out.begin(), out.end(), controller) == out.end()) out.push_back(controller);
  }
  return out;
}

}  // namespace cryo::cgroup
