#include "oci/config.h"

#include <nlohmann/json.hpp>

#include <set>

#include "core/sys/io.h"

namespace cryo::oci {
namespace {

using nlohmann::json;

// Thrown inside this file only, for an unsupported or malformed field.
struct SpecError {
  std::string message;
};

[[noreturn]] void unsupported_field(const std::string& what) {
  throw SpecError{what + " is not supported by cryo"};
}

// Runtime-spec "Extensibility": a property the spec does not define is ignored.
// One it defines but cryo cannot honour (`unsupported`) fails naming it, so that
// nothing a config asks for is silently dropped; an empty one is harmless.
void check_keys(const json& j, const std::string& where, const std::set<std::string>& unsupported) {
  if (!j.is_object()) throw SpecError{where + " must be an object"};
  for (auto& [key, value] : j.items()) {
    if (!unsupported.count(key)) continue;
    if (value.is_null()) continue;
    if ((value.is_array() || value.is_object() || value.is_string()) && value.empty()) continue;
    unsupported_field(where + "." + key);
  }
}

template <typename T>
std::optional<T> opt(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  return j[key].get<T>();
}

std::vector<std::string> strings(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return {};
  return j[key].get<std::vector<std::string>>();
}

Process parse_process_json(const json& p) {
  check_keys(p, "process", {});
  Process out;
  out.terminal = p.value("terminal", false);
  if (p.contains("consoleSize")) {
    out.console_height = p["consoleSize"].value("height", 0u);
    out.console_width = p["consoleSize"].value("width", 0u);
  }
  if (p.contains("user")) {
    const json& u = p["user"];
    check_keys(u, "process.user", {});
    out.user.uid = u.value("uid", 0u);
    out.user.gid = u.value("gid", 0u);
    out.user.umask = opt<mode_t>(u, "umask");
    if (u.contains("additionalGids") && !u["additionalGids"].is_null())
      out.user.additional_gids = u["additionalGids"].get<std::vector<gid_t>>();
  }
  out.args = strings(p, "args");
  out.env = strings(p, "env");
  out.cwd = p.value("cwd", std::string("/"));
  if (out.cwd.empty() || out.cwd[0] != '/') throw SpecError{"process.cwd must be an absolute path, got '" + out.cwd + "'"};
  if (p.contains("capabilities") && !p["capabilities"].is_null()) {
    const json& c = p["capabilities"];
    check_keys(c, "process.capabilities", {});
    out.capabilities = Capabilities{strings(c, "bounding"), strings(c, "effective"), strings(c, "inheritable"),
                                    strings(c, "permitted"), strings(c, "ambient")};
  }
  if (p.contains("rlimits") && !p["rlimits"].is_null()) {
    for (const json& r : p["rlimits"]) {
      out.rlimits.push_back(Rlimit{r.at("type").get<std::string>(), r.at("soft").get<uint64_t>(),
                                   r.at("hard").get<uint64_t>()});
    }
  }
  out.no_new_privileges = p.value("noNewPrivileges", false);
  out.oom_score_adj = opt<int>(p, "oomScoreAdj");
  if (p.contains("scheduler") && !p["scheduler"].is_null()) {
    const json& s = p["scheduler"];
    check_keys(s, "process.scheduler", {});
    out.scheduler = Scheduler{s.at("policy").get<std::string>(), s.value("nice", 0), s.value("priority", 0),
                              strings(s, "flags"), s.value("runtime", uint64_t{0}), s.value("deadline", uint64_t{0}),
                              s.value("period", uint64_t{0})};
  }
  if (p.contains("execCPUAffinity") && !p["execCPUAffinity"].is_null()) {
    const json& a = p["execCPUAffinity"];
    check_keys(a, "process.execCPUAffinity", {});
    out.exec_cpu_affinity_initial = a.value("initial", std::string());
    out.exec_cpu_affinity_final = a.value("final", std::string());
  }
  if (p.contains("ioPriority") && !p["ioPriority"].is_null()) {
    const json& io = p["ioPriority"];
    check_keys(io, "process.ioPriority", {});
    out.io_priority = IoPriority{io.at("class").get<std::string>(), io.value("priority", 0)};
  }
  return out;
}

Hook parse_hook(const json& h) {
  check_keys(h, "hook", {});
  Hook out{h.at("path").get<std::string>(), strings(h, "args"), strings(h, "env"), opt<int>(h, "timeout")};
  if (out.timeout && *out.timeout <= 0) throw SpecError{"hook " + out.path + ": timeout must be positive"};
  return out;
}

std::vector<Hook> hook_list(const json& hooks, const char* key) {
  std::vector<Hook> out;
  if (hooks.contains(key) && !hooks[key].is_null())
    for (const json& h : hooks[key]) out.push_back(parse_hook(h));
  return out;
}

std::vector<IdMapping> id_mappings(const json& linux, const char* key) {
  std::vector<IdMapping> out;
  if (linux.contains(key) && !linux[key].is_null())
    for (const json& m : linux[key])
      out.push_back({m.at("containerID").get<uint32_t>(), m.at("hostID").get<uint32_t>(), m.at("size").get<uint32_t>()});
  return out;
}

void parse_resources(const json& r, cgroup::Resources& out, std::vector<std::string>& warnings) {
  check_keys(r, "linux.resources", {"network", "rdma"});
  if (r.contains("memory") && !r["memory"].is_null()) {
    const json& m = r["memory"];
    check_keys(m, "linux.resources.memory", {});
    // Memory cgroups are always hierarchical on current kernels; only "true" can be honoured.
    if (m.contains("useHierarchy") && m["useHierarchy"].is_boolean() && !m["useHierarchy"].get<bool>())
      unsupported_field("linux.resources.memory.useHierarchy = false");
    if (m.value("checkBeforeUpdate", false)) unsupported_field("linux.resources.memory.checkBeforeUpdate");
    out.memory_limit = opt<int64_t>(m, "limit");
    out.memory_reservation = opt<int64_t>(m, "reservation");
    out.memory_swap = opt<int64_t>(m, "swap");
    out.memory_swappiness = opt<uint64_t>(m, "swappiness");
    out.disable_oom_killer = m.value("disableOOMKiller", false);
    // Deprecated by the runtime-spec and gone from cgroup v2 (and from v1 since Linux 6.1): runc ignores them too.
    for (const char* key : {"kernel", "kernelTCP"})
      if (m.contains(key) && !m[key].is_null())
        warnings.push_back(std::string("linux.resources.memory.") + key + " is deprecated and ignored");
  }
  if (r.contains("cpu") && !r["cpu"].is_null()) {
    const json& c = r["cpu"];
    check_keys(c, "linux.resources.cpu", {"burst", "idle"});
    out.cpu_shares = opt<uint64_t>(c, "shares");
    out.cpu_quota = opt<int64_t>(c, "quota");
    out.cpu_period = opt<uint64_t>(c, "period");
    out.cpu_rt_runtime = opt<int64_t>(c, "realtimeRuntime");
    out.cpu_rt_period = opt<uint64_t>(c, "realtimePeriod");
    out.cpuset_cpus = c.value("cpus", std::string());
    out.cpuset_mems = c.value("mems", std::string());
  }
  if (r.contains("pids") && !r["pids"].is_null()) out.pids_limit = opt<int64_t>(r["pids"], "limit");
  if (r.contains("blockIO") && !r["blockIO"].is_null()) {
    const json& b = r["blockIO"];
    check_keys(b, "linux.resources.blockIO", {"leafWeight"});
    out.blkio_weight = opt<uint16_t>(b, "weight");
    if (b.contains("weightDevice") && !b["weightDevice"].is_null())
      for (const json& d : b["weightDevice"]) {
        if (d.contains("leafWeight")) unsupported_field("linux.resources.blockIO.weightDevice.leafWeight");
        out.blkio_weight_devices.push_back({d.at("major").get<int64_t>(), d.at("minor").get<int64_t>(), opt<uint16_t>(d, "weight")});
      }
    auto throttle = [&](const char* key, std::vector<cgroup::ThrottleDevice>& list) {
      if (b.contains(key) && !b[key].is_null())
        for (const json& d : b[key])
          list.push_back({d.at("major").get<int64_t>(), d.at("minor").get<int64_t>(), d.at("rate").get<uint64_t>()});
    };
    throttle("throttleReadBpsDevice", out.throttle_read_bps);
    throttle("throttleWriteBpsDevice", out.throttle_write_bps);
    throttle("throttleReadIOPSDevice", out.throttle_read_iops);
    throttle("throttleWriteIOPSDevice", out.throttle_write_iops);
  }
  if (r.contains("hugepageLimits") && !r["hugepageLimits"].is_null())
    for (const json& h : r["hugepageLimits"]) out.hugepage_limits[h.at("pageSize").get<std::string>()] = h.at("limit").get<uint64_t>();
  if (r.contains("devices") && !r["devices"].is_null())
    for (const json& d : r["devices"]) {
      cgroup::DeviceRule rule;
      rule.allow = d.at("allow").get<bool>();
      std::string type = d.value("type", std::string("a"));
      if (type != "a" && type != "c" && type != "b") throw SpecError{"linux.resources.devices: bad type '" + type + "'"};
      rule.type = type[0];
      rule.major = d.contains("major") && !d["major"].is_null() ? d["major"].get<int64_t>() : -1;
      rule.minor = d.contains("minor") && !d["minor"].is_null() ? d["minor"].get<int64_t>() : -1;
      rule.access = d.value("access", std::string("rwm"));
      out.devices.push_back(rule);
    }
  if (r.contains("unified") && !r["unified"].is_null()) out.unified = r["unified"].get<std::map<std::string, std::string>>();
}

seccomp::Profile parse_seccomp(const json& s) {
  check_keys(s, "linux.seccomp", {});
  seccomp::Profile out;
  out.default_action = s.at("defaultAction").get<std::string>();
  out.default_errno = opt<unsigned>(s, "defaultErrnoRet");
  out.architectures = strings(s, "architectures");
  out.flags = strings(s, "flags");
  out.listener_path = s.value("listenerPath", std::string());
  if (!out.listener_path.empty()) unsupported_field("linux.seccomp.listenerPath (seccomp user notification)");
  if (s.contains("syscalls") && !s["syscalls"].is_null())
    for (const json& sc : s["syscalls"]) {
      seccomp::Rule rule;
      rule.names = strings(sc, "names");
      rule.action = sc.at("action").get<std::string>();
      rule.errno_ret = opt<unsigned>(sc, "errnoRet");
      if (sc.contains("args") && !sc["args"].is_null())
        for (const json& a : sc["args"])
          rule.args.push_back({a.at("index").get<unsigned>(), a.value("value", uint64_t{0}), a.value("valueTwo", uint64_t{0}),
                               a.at("op").get<std::string>()});
      out.rules.push_back(std::move(rule));
    }
  return out;
}

void parse_linux(const json& l, Spec& out) {
  check_keys(l, "linux", {"intelRdt", "memoryPolicy", "netDevices"});
  if (l.contains("timeOffsets") && !l["timeOffsets"].is_null())
    for (auto& [clock, offset] : l["timeOffsets"].items()) {
      if (clock != "monotonic" && clock != "boottime") throw SpecError{"linux.timeOffsets: unknown clock '" + clock + "'"};
      out.time_offsets[clock] = {offset.value("secs", int64_t{0}), offset.value("nanosecs", uint32_t{0})};
    }
  if (l.contains("namespaces") && !l["namespaces"].is_null()) {
    static const std::set<std::string> kTypes = {"pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"};
    for (const json& n : l["namespaces"]) {
      Namespace ns{n.at("type").get<std::string>(), n.value("path", std::string())};
      if (!kTypes.count(ns.type)) throw SpecError{"linux.namespaces: unknown namespace type '" + ns.type + "'"};
      for (auto& seen : out.namespaces)
        if (seen.type == ns.type) throw SpecError{"linux.namespaces: '" + ns.type + "' given twice"};
      out.namespaces.push_back(ns);
    }
  }
  out.uid_mappings = id_mappings(l, "uidMappings");
  out.gid_mappings = id_mappings(l, "gidMappings");
  if (l.contains("devices") && !l["devices"].is_null())
    for (const json& d : l["devices"]) {
      Device dev{d.at("path").get<std::string>(), d.at("type").get<std::string>(), d.value("major", int64_t{0}),
                 d.value("minor", int64_t{0}), opt<mode_t>(d, "fileMode"), opt<uid_t>(d, "uid"), opt<gid_t>(d, "gid")};
      if (dev.type != "c" && dev.type != "b" && dev.type != "u" && dev.type != "p")
        throw SpecError{"linux.devices " + dev.path + ": bad type '" + dev.type + "'"};
      out.devices.push_back(dev);
    }
  out.cgroups_path = l.value("cgroupsPath", std::string());
  if (l.contains("resources") && !l["resources"].is_null()) parse_resources(l["resources"], out.resources, out.warnings);
  if (l.contains("sysctl") && !l["sysctl"].is_null()) out.sysctl = l["sysctl"].get<std::map<std::string, std::string>>();
  if (l.contains("seccomp") && !l["seccomp"].is_null()) out.seccomp = parse_seccomp(l["seccomp"]);
  out.rootfs_propagation = l.value("rootfsPropagation", std::string());
  out.masked_paths = strings(l, "maskedPaths");
  out.readonly_paths = strings(l, "readonlyPaths");
  if (l.contains("personality") && !l["personality"].is_null()) {
    const json& p = l["personality"];
    out.personality_domain = p.value("domain", std::string());
    if (out.personality_domain != "LINUX" && out.personality_domain != "LINUX32")
      throw SpecError{"linux.personality.domain must be LINUX or LINUX32, got '" + out.personality_domain + "'"};
    if (!strings(p, "flags").empty()) unsupported_field("linux.personality.flags");
  }
  out.mount_label = l.value("mountLabel", std::string());
  if (!out.mount_label.empty()) unsupported_field("linux.mountLabel (SELinux)");
}

// A sysctl is written from inside the container: it must belong to a namespace the
// container has, or it would change the host (runc refuses the same ones).
void check_sysctls(const Spec& spec) {
  static const std::set<std::string> kIpc = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                                             "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"};
  for (auto& [key, value] : spec.sysctl) {
    if (kIpc.count(key) || key.starts_with("fs.mqueue.")) {
      if (!spec.has_namespace("ipc")) throw SpecError{"sysctl " + key + " is not allowed in the host's ipc namespace"};
    } else if (key.starts_with("net.")) {
      if (!spec.has_namespace("network"))
        throw SpecError{"sysctl " + key + " is not allowed in the host's network namespace"};
    } else if (key == "kernel.domainname" && spec.has_namespace("uts")) {
    } else if (key == "kernel.hostname") {
      throw SpecError{"sysctl kernel.hostname: set the hostname field instead"};
    } else {
      throw SpecError{"sysctl " + key + " is not in a namespace of the container"};
    }
  }
}

Spec parse(const json& j, const std::string& bundle_dir) {
  // Other platforms' sections (windows, solaris, vm, zos) do not apply here and are ignored, as runc does.
  check_keys(j, "config", {});
  Spec out;
  out.oci_version = j.value("ociVersion", std::string());
  if (j.contains("process") && !j["process"].is_null()) {
    out.process = parse_process_json(j["process"]);
    out.has_process = true;
    const json& p = j["process"];
    if (!p.value("apparmorProfile", std::string()).empty()) unsupported_field("process.apparmorProfile (AppArmor)");
    if (!p.value("selinuxLabel", std::string()).empty()) unsupported_field("process.selinuxLabel (SELinux)");
  }
  if (!j.contains("root")) throw SpecError{"config has no root"};
  out.root_path = j["root"].at("path").get<std::string>();
  out.root_readonly = j["root"].value("readonly", false);
  if (!out.root_path.starts_with("/")) out.root_path = bundle_dir + "/" + out.root_path;
  out.hostname = j.value("hostname", std::string());
  out.domainname = j.value("domainname", std::string());
  if (j.contains("mounts") && !j["mounts"].is_null())
    for (const json& m : j["mounts"]) {
      check_keys(m, "mounts[]", {"uidMappings", "gidMappings"});
      Mount mount{m.at("destination").get<std::string>(), m.value("type", std::string()), m.value("source", std::string()),
                  strings(m, "options")};
      if (!mount.destination.starts_with("/")) throw SpecError{"mount destination must be absolute: " + mount.destination};
      // init resolves paths from inside the rootfs, so a relative bind source is made the bundle's now.
      bool bind = mount.type == "bind";
      for (auto& o : mount.options) bind = bind || o == "bind" || o == "rbind";
      if (bind && !mount.source.empty() && !mount.source.starts_with("/")) mount.source = bundle_dir + "/" + mount.source;
      out.mounts.push_back(mount);
    }
  if (j.contains("hooks") && !j["hooks"].is_null()) {
    const json& h = j["hooks"];
    check_keys(h, "hooks", {});
    out.hooks = Hooks{hook_list(h, "prestart"), hook_list(h, "createRuntime"), hook_list(h, "createContainer"),
                      hook_list(h, "startContainer"), hook_list(h, "poststart"), hook_list(h, "poststop")};
  }
  if (j.contains("annotations") && !j["annotations"].is_null())
    out.annotations = j["annotations"].get<std::map<std::string, std::string>>();
  if (j.contains("linux") && !j["linux"].is_null()) parse_linux(j["linux"], out);
  if (out.has_namespace("user") && out.find_namespace("user")->path.empty() &&
      (out.uid_mappings.empty() || out.gid_mappings.empty()))
    throw SpecError{"a new user namespace needs linux.uidMappings and linux.gidMappings"};
  check_sysctls(out);
  if (!out.time_offsets.empty() && (!out.has_namespace("time") || !out.find_namespace("time")->path.empty()))
    throw SpecError{"linux.timeOffsets needs a new time namespace"};
  // A uts namespace joined by path gets the hostname too (as with runc); the host's never does.
  if (!out.hostname.empty() && !out.has_namespace("uts"))
    throw SpecError{"hostname is set but the container has no uts namespace"};
  if (!out.domainname.empty() && !out.has_namespace("uts"))
    throw SpecError{"domainname is set but the container has no uts namespace"};
  return out;
}

}  // namespace

bool Spec::has_namespace(const std::string& type) const { return find_namespace(type) != nullptr; }

const Namespace* Spec::find_namespace(const std::string& type) const {
  for (auto& n : namespaces)
    if (n.type == type) return &n;
  return nullptr;
}

Result<Spec> parse_spec(const std::string& json_text, const std::string& bundle_dir) {
  try {
    return parse(json::parse(json_text), bundle_dir);
  } catch (const SpecError& e) {
    return Error(EINVAL, e.message);
  } catch (const json::exception& e) {
    return Error(EINVAL, std::string("config.json: ") + e.what());
  }
}

Result<Spec> load_spec(const std::string& bundle_dir) {
  CRYO_ASSIGN(std::string text, read_file(bundle_dir + "/config.json"));
  return parse_spec(text, bundle_dir).wrap(bundle_dir + "/config.json");
}

Result<cgroup::Resources> parse_resources(const std::string& json_text, std::vector<std::string>* warnings) {
  try {
    cgroup::Resources out;
    std::vector<std::string> ignored;
    parse_resources(json::parse(json_text), out, warnings ? *warnings : ignored);
    return out;
  } catch (const SpecError& e) {
    return Error(EINVAL, e.message);
  } catch (const json::exception& e) {
    return Error(EINVAL, std::string("resources: ") + e.what());
  }
}

Result<Process> parse_process(const std::string& json_text) {
  try {
    return parse_process_json(json::parse(json_text));
  } catch (const SpecError& e) {
    return Error(EINVAL, e.message);
  } catch (const json::exception& e) {
    return Error(EINVAL, std::string("process.json: ") + e.what());
  }
}

}  // namespace cryo::oci
