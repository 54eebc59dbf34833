#include "oci/state.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/cgroup/cgroup.h"
#include "core/sys/io.h"

namespace cryo::oci {

using nlohmann::json;

const char* status_name(ContainerStatus s) {
  switch (s) {
    case ContainerStatus::kCreating: return "creating";
    case ContainerStatus::kCreated: return "created";
    case ContainerStatus::kRunning: return "running";
    case ContainerStatus::kPaused: return "paused";
    case ContainerStatus::kStopped: return "stopped";
  }
  return "unknown";
}

std::string container_dir(const std::string& root, const std::string& id) { return root + "/" + id; }

Status validate_id(const std::string& id) {
  if (id.empty()) return Error(EINVAL, "container id is empty");
  if (id == "." || id == ".." || id.size() > 1024) return Error(EINVAL, "invalid container id '" + id + "'");
  for (char c : id)
    if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' && c != '+')
      return Error(EINVAL, "invalid container id '" + id + "': use letters, digits, '-', '_', '.', '+'");
  return {};
}

std::string now_rfc3339() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char buf[64];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[96];
  snprintf(out, sizeof out, "%s.%09ldZ", buf, ts.tv_nsec);
  return out;
}

std::string state_to_json(const ContainerState& s) {
  json j = {{"id", s.id},           {"pid", s.pid},         {"start_time", s.start_time},
            {"bundle", s.bundle},   {"rootfs", s.rootfs},   {"created", s.created},
            {"owner", s.owner},     {"annotations", s.annotations}, {"cgroup_path", s.cgroup_path},
            {"paused", s.paused},   {"status", status_name(s.status)}, {"namespace_paths", s.namespace_paths}};
  return j.dump(2);
}

std::string oci_state_json(const ContainerState& s) {
  json j = {{"ociVersion", "1.2.0"}, {"id", s.id},         {"status", status_name(s.status)},
            {"pid", s.status == ContainerStatus::kStopped ? 0 : s.pid}, {"bundle", s.bundle}, {"rootfs", s.rootfs},
            {"created", s.created}, {"owner", s.owner}};
  if (!s.annotations.empty()) j["annotations"] = s.annotations;
  return j.dump(2);
}

Result<ContainerState> state_from_json(const std::string& text) {
  try {
    json j = json::parse(text);
    ContainerState s;
    s.id = j.at("id").get<std::string>();
    s.pid = j.value("pid", 0);
    s.start_time = j.value("start_time", uint64_t{0});
    s.bundle = j.value("bundle", "");
    s.rootfs = j.value("rootfs", "");
    s.created = j.value("created", "");
    s.owner = j.value("owner", "");
    s.annotations = j.value("annotations", std::map<std::string, std::string>());
    s.cgroup_path = j.value("cgroup_path", "");
    s.paused = j.value("paused", false);
    s.namespace_paths = j.value("namespace_paths", std::map<std::string, std::string>());
    std::string status = j.value("status", "creating");
    s.status = status == "creating" ? ContainerStatus::kCreating : ContainerStatus::kCreated;
    return s;
  } catch (const json::exception& e) {
    return Error(EINVAL, std::string("state.json: ") + e.what());
  }
}

Result<ContainerLock> create_container_dir(const std::string& root, const std::string& id) {
  CRYO_TRY(validate_id(id));
  // Make ROOT and its parents (containerd passes ROOT/<namespace>).
  for (size_t end = root.find('/', 1);; end = root.find('/', end + 1)) {
    std::string prefix = root.substr(0, end);
    if (!prefix.empty() && ::mkdir(prefix.c_str(), 0711) < 0 && errno != EEXIST) return errno_error("mkdir " + prefix);
    if (end == std::string::npos) break;
  }
  std::string dir = container_dir(root, id);
  if (::mkdir(dir.c_str(), 0711) < 0) {
    if (errno == EEXIST) return Error(EEXIST, "container \"" + id + "\" already exists");
    return errno_error("mkdir " + dir);
  }
  CRYO_ASSIGN(UniqueFd fd, open_file(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (::flock(fd.get(), LOCK_EX) < 0) return errno_error("lock " + dir);
  return ContainerLock(std::move(fd));
}

Result<ContainerLock> lock_container(const std::string& root, const std::string& id) {
  CRYO_TRY(validate_id(id));
  std::string dir = container_dir(root, id);
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Error(ENOENT, "container \"" + id + "\" does not exist");
    return errno_error("open " + dir);
  }
  UniqueFd owned(fd);
  if (::flock(fd, LOCK_EX) < 0) return errno_error("lock " + dir);
  // A delete may have removed the directory while we waited.
  struct stat st;
  if (::fstat(fd, &st) < 0 || st.st_nlink == 0) return Error(ENOENT, "container \"" + id + "\" does not exist");
  return ContainerLock(std::move(owned));
}

Status save_state(const std::string& root, const ContainerState& s) {
  return write_file_atomic(container_dir(root, s.id) + "/state.json", state_to_json(s));
}

uint64_t process_start_time(pid_t pid) {
  auto text = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (!text.ok()) return 0;
  size_t paren = text->rfind(')');
  if (paren == std::string::npos) return 0;
  // After "pid (comm)": field 3 is the state, field 22 the start time.
  std::string rest = text->substr(paren + 2);
  if (!rest.empty() && (rest[0] == 'Z' || rest[0] == 'X')) return 0;
  size_t pos = 0;
  for (int field = 3; field < 22; field++) {
    pos = rest.find(' ', pos);
    if (pos == std::string::npos) return 0;
    pos++;
  }
  return std::strtoull(rest.c_str() + pos, nullptr, 10);
}

Status compute_status(const std::string& root, ContainerState& s) {
  if (s.status == ContainerStatus::kCreating && s.pid == 0) return {};
  if (s.pid <= 0 || process_start_time(s.pid) != s.start_time) {
    s.status = ContainerStatus::kStopped;
    return {};
  }
  if (s.paused) {
    s.status = ContainerStatus::kPaused;
    return {};
  }
  struct stat st;
  std::string fifo = container_dir(root, s.id) + "/exec.fifo";
  if (s.status == ContainerStatus::kCreating) return {};
  s.status = ::stat(fifo.c_str(), &st) == 0 ? ContainerStatus::kCreated : ContainerStatus::kRunning;
  return {};
}

Result<ContainerState> load_state(const std::string& root, const std::string& id) {
  CRYO_TRY(validate_id(id));
  std::string dir = container_dir(root, id);
  auto text = read_file(dir + "/state.json");
  if (!text.ok()) {
    if (text.error().code() == ENOENT) return Error(ENOENT, "container \"" + id + "\" does not exist");
    return std::move(text).error();
  }
  CRYO_ASSIGN(ContainerState s, state_from_json(*text));
  CRYO_TRY(compute_status(root, s));
  return s;
}

Result<std::vector<std::string>> list_ids(const std::string& root) {
  std::vector<std::string> ids;
  DIR* d = ::opendir(root.c_str());
  if (!d) {
    if (errno == ENOENT) return ids;
    return errno_error("open " + root);
  }
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == ".." || e->d_type != DT_DIR) continue;
    ids.push_back(name);
  }
  ::closedir(d);
  std::sort(ids.begin(), ids.end());
  return ids;
}

}  // namespace cryo::oci
