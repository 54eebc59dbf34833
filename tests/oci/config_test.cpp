#include "oci/config.h"

#include <doctest/doctest.h>

#include "oci/caps.h"
#include "oci/process.h"

using cryo::oci::parse_spec;

namespace {

const char* kFull = R"({
  "ociVersion": "1.2.0",
  "process": {
    "terminal": true, "consoleSize": {"height": 24, "width": 80},
    "user": {"uid": 1000, "gid": 100, "umask": 18, "additionalGids": [5, 6]},
    "args": ["sh", "-c", "true"], "env": ["PATH=/bin"], "cwd": "/work",
    "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"],
                     "inheritable": [], "ambient": []},
    "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048}],
    "noNewPrivileges": true, "oomScoreAdj": 100
  },
  "root": {"path": "rootfs", "readonly": true},
  "hostname": "box",
  "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
             {"destination": "/data", "type": "bind", "source": "/srv", "options": ["rbind", "ro"]}],
  "hooks": {"prestart": [{"path": "/bin/hook", "args": ["hook", "x"], "timeout": 5}],
            "poststop": [{"path": "/bin/stop"}]},
  "annotations": {"a": "b"},
  "linux": {
    "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "network", "path": "/run/netns/x"},
                   {"type": "user"}],
    "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
    "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
    "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438}],
    "cgroupsPath": "/cryo/x",
    "resources": {"memory": {"limit": 1048576, "swap": 2097152}, "cpu": {"shares": 512, "quota": 1000, "period": 10000},
                  "pids": {"limit": 10}, "devices": [{"allow": false, "access": "rwm"}]},
    "sysctl": {"net.ipv4.ip_forward": "1"},
    "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                              "args": [{"index": 1, "value": 448, "op": "SCMP_CMP_EQ"}]}]},
    "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"], "rootfsPropagation": "rslave"
  }
})";

}  // namespace

TEST_CASE("a full config parses into every field") {
  auto spec = parse_spec(kFull, "/bundle");
  REQUIRE(spec.ok());
  CHECK(spec->root_path == "/bundle/rootfs");
  CHECK(spec->root_readonly);
  CHECK(spec->process.terminal);
  CHECK(spec->process.console_height == 24);
  CHECK(spec->process.user.uid == 1000);
  CHECK(spec->process.user.umask == 18);
  CHECK(spec->process.user.additional_gids == std::vector<gid_t>{5, 6});
  CHECK(spec->process.cwd == "/work");
  REQUIRE(spec->process.capabilities);
  CHECK(spec->process.capabilities->bounding == std::vector<std::string>{"CAP_KILL"});
  CHECK(spec->process.rlimits.at(0).hard == 2048);
  CHECK(spec->process.no_new_privileges);
  CHECK(spec->process.oom_score_adj == 100);
  CHECK(spec->mounts.at(1).options == std::vector<std::string>{"rbind", "ro"});
  CHECK(spec->hooks.prestart.at(0).timeout == 5);
  CHECK(spec->hooks.poststop.at(0).path == "/bin/stop");
  CHECK(spec->annotations.at("a") == "b");
  CHECK(spec->find_namespace("network")->path == "/run/netns/x");
  CHECK(spec->uid_mappings.at(0).host_id == 100000);
  CHECK(spec->devices.at(0).file_mode == 0666);
  CHECK(spec->resources.memory_limit == 1048576);
  CHECK(spec->resources.cpu_shares == 512);
  CHECK(spec->resources.pids_limit == 10);
  CHECK(spec->resources.devices.at(0).type == 'a');
  CHECK_FALSE(spec->resources.devices.at(0).allow);
  CHECK(spec->sysctl.at("net.ipv4.ip_forward") == "1");
  REQUIRE(spec->seccomp);
  CHECK(spec->seccomp->rules.at(0).errno_ret == 13u);
  CHECK(spec->seccomp->rules.at(0).args.at(0).value == 448);
  CHECK(spec->masked_paths.at(0) == "/proc/kcore");
}

TEST_CASE("unsupported fields fail naming the field") {
  auto spec = parse_spec(R"({"root": {"path": "/r"}, "linux": {"intelRdt": {"closID": "a"}}})", "/b");
  REQUIRE_FALSE(spec.ok());
  CHECK(spec.error().message().find("linux.intelRdt") != std::string::npos);
  spec = parse_spec(R"({"root": {"path": "/r"}, "process": {"args": ["x"], "apparmorProfile": "p"}})", "/b");
  REQUIRE_FALSE(spec.ok());
  CHECK(spec.error().message().find("apparmorProfile") != std::string::npos);
  spec = parse_spec(R"({"root": {"path": "/r"}, "linux": {"resources": {"rdma": {"x": {}}}}})", "/b");
  REQUIRE_FALSE(spec.ok());
  CHECK(spec.error().message().find("linux.resources.rdma") != std::string::npos);
  // Empty unsupported fields are harmless.
  CHECK(parse_spec(R"({"root": {"path": "/r"}, "linux": {"intelRdt": null}})", "/b").ok());
}

TEST_CASE("properties the runtime-spec does not define are ignored (Extensibility)") {
  auto spec = parse_spec(R"({"root": {"path": "/r"}, "org.example.extension": {"x": 1}, "windows": {"layerFolders": []},
      "process": {"args": ["x"], "org.example": 1, "user": {"uid": 0, "gid": 0, "username": "w"}},
      "linux": {"org.example": true, "resources": {"org.example": 1, "cpu": {"org.example": 2}}},
      "mounts": [{"destination": "/m", "type": "tmpfs", "source": "t", "org.example": 3}]})", "/b");
  CHECK(spec.ok());
  // Defined by the spec but not implemented: still refused by name.
  for (const char* config : {R"({"root": {"path": "/r"}, "linux": {"resources": {"cpu": {"burst": 10}}}})",
                             R"({"root": {"path": "/r"}, "linux": {"resources": {"network": {"classID": 1}}}})",
                             R"({"root": {"path": "/r"}, "mounts": [{"destination": "/m", "source": "/s", "type": "bind",
                                 "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}]})"}) {
    auto refused = parse_spec(config, "/b");
    CHECK_FALSE(refused.ok());
    if (!refused.ok()) CHECK(refused.error().message().find("not supported") != std::string::npos);
  }
}

TEST_CASE("deprecated kernel memory limits are ignored with a warning") {
  auto spec = parse_spec(R"({"root": {"path": "/r"}, "linux": {"resources": {"memory": {"limit": 4096,
      "kernel": 1048576, "kernelTCP": 1048576}}}})", "/b");
  REQUIRE(spec.ok());
  CHECK(spec->resources.memory_limit == 4096);
  REQUIRE(spec->warnings.size() == 2);
  CHECK(spec->warnings[0].find("linux.resources.memory.kernel") != std::string::npos);
  std::vector<std::string> warnings;
  CHECK(cryo::oci::parse_resources(R"({"memory": {"kernel": 1}})", &warnings).ok());
  CHECK(warnings.size() == 1);
}

TEST_CASE("unknown capability names are reported, not refused") {
  auto spec = parse_spec(R"({"root": {"path": "/r"}, "process": {"args": ["x"], "capabilities": {
      "bounding": ["CAP_KILL", "CAP_TEST"], "permitted": ["CAP_KILL", "CAP_AUDIT_WRITE"], "inheritable": ["CAP_KILL"],
      "ambient": ["CAP_KILL", "CAP_AUDIT_WRITE", "CAP_TEST"]}}})", "/b");
  REQUIRE(spec.ok());
  REQUIRE(spec->process.capabilities);
  CHECK(cryo::oci::unknown_capabilities(*spec->process.capabilities) == std::vector<std::string>{"CAP_TEST"});
  // runc's default spec lists ambient capabilities that are not inheritable: they are skipped, not an error.
  CHECK(cryo::oci::unraisable_ambient_capabilities(*spec->process.capabilities) ==
        std::vector<std::string>{"CAP_AUDIT_WRITE"});
}

TEST_CASE("a uts namespace joined by path takes the hostname") {
  auto spec = parse_spec(R"({"root": {"path": "/r"}, "hostname": "h", "domainname": "d",
      "linux": {"namespaces": [{"type": "uts", "path": "/proc/1/ns/uts"}]}})", "/b");
  CHECK(spec.ok());
  CHECK_FALSE(parse_spec(R"({"root": {"path": "/r"}, "domainname": "d"})", "/b").ok());  // no uts namespace
}

TEST_CASE("relative bind sources are the bundle's") {
  auto spec = parse_spec(R"({"root": {"path": "/r"}, "mounts": [
      {"destination": "/a", "type": "bind", "source": "data"},
      {"destination": "/b", "type": "none", "source": "more", "options": ["rbind"]},
      {"destination": "/c", "type": "tmpfs", "source": "tmpfs"}]})", "/bundle");
  REQUIRE(spec.ok());
  CHECK(spec->mounts.at(0).source == "/bundle/data");
  CHECK(spec->mounts.at(1).source == "/bundle/more");
  CHECK(spec->mounts.at(2).source == "tmpfs");
}

TEST_CASE("malformed or inconsistent configs fail") {
  CHECK_FALSE(parse_spec("{", "/b").ok());
  CHECK_FALSE(parse_spec(R"({"process": {"args": ["x"]}})", "/b").ok());  // no root
  CHECK_FALSE(parse_spec(R"({"root": {"path": "/r"}, "process": {"args": ["x"], "cwd": "rel"}})", "/b").ok());
  CHECK_FALSE(parse_spec(R"({"root": {"path": "/r"}, "linux": {"namespaces": [{"type": "bogus"}]}})", "/b").ok());
  CHECK_FALSE(parse_spec(R"({"root": {"path": "/r"}, "linux": {"namespaces": [{"type": "user"}]}})", "/b").ok());
  CHECK_FALSE(parse_spec(R"({"root": {"path": "/r"}, "hostname": "h"})", "/b").ok());  // no uts namespace
  CHECK_FALSE(parse_spec(R"({"root": {"path": "/r"}, "mounts": [{"destination": "rel"}]})", "/b").ok());
}

TEST_CASE("exec --process files parse as a process") {
  auto p = cryo::oci::parse_process(R"({"args": ["ls"], "env": ["A=1"], "cwd": "/", "terminal": false})");
  REQUIRE(p.ok());
  CHECK(p->args == std::vector<std::string>{"ls"});
  CHECK_FALSE(cryo::oci::parse_process(R"({"args": "notalist"})").ok());
}

TEST_CASE("time offsets need a new time namespace") {
  auto ok = parse_spec(R"({"root": {"path": "/r"}, "linux": {"namespaces": [{"type": "time"}],
                            "timeOffsets": {"monotonic": {"secs": 5, "nanosecs": 7}}}})", "/b");
  REQUIRE(ok.ok());
  CHECK(ok->time_offsets.at("monotonic") == std::pair<int64_t, uint32_t>{5, 7});
  CHECK_FALSE(parse_spec(R"({"root": {"path": "/r"}, "linux": {"timeOffsets": {"boottime": {"secs": 1}}}})", "/b").ok());
  CHECK_FALSE(parse_spec(R"({"root": {"path": "/r"}, "linux": {"namespaces": [{"type": "time"}],
                             "timeOffsets": {"realtime": {"secs": 1}}}})", "/b").ok());
}

TEST_CASE("scheduler and ioPriority parse") {
  auto spec = parse_spec(R"({"root": {"path": "/r"}, "process": {"args": ["x"],
      "scheduler": {"policy": "SCHED_FIFO", "priority": 5, "flags": ["SCHED_FLAG_RESET_ON_FORK"]},
      "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 3}}})", "/b");
  REQUIRE(spec.ok());
  CHECK(spec->process.scheduler->policy == "SCHED_FIFO");
  CHECK(spec->process.scheduler->priority == 5);
  CHECK(spec->process.io_priority->priority == 3);
  CHECK_FALSE(parse_spec(R"({"root": {"path": "/r"}, "process": {"args": ["x"], "scheduler": {"bogus": 1}}})", "/b").ok());
}

TEST_CASE("HOME comes from the container's /etc/passwd") {
  std::string passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\nbad\n";
  CHECK(cryo::oci::home_of(passwd, 0) == "/root");
  CHECK(cryo::oci::home_of(passwd, 65534) == "/nonexistent");
  CHECK(cryo::oci::home_of(passwd, 1000) == "/");
  CHECK(cryo::oci::home_of("", 0) == "/");
}

TEST_CASE("sysctls must belong to a namespace of the container") {
  auto with = [](const char* namespaces, const char* sysctl) {
    return parse_spec(std::string(R"({"root": {"path": "/r"}, "linux": {"namespaces": )") + namespaces +
                          R"(, "sysctl": )" + sysctl + "}}",
                      "/b");
  };
  CHECK(with(R"([{"type": "network"}, {"type": "ipc"}])", R"({"net.ipv4.ip_forward": "1", "kernel.msgmax": "1",
      "fs.mqueue.msg_max": "20"})").ok());
  CHECK_FALSE(with(R"([{"type": "ipc"}])", R"({"net.ipv4.ip_forward": "1"})").ok());
  CHECK_FALSE(with(R"([{"type": "network"}])", R"({"kernel.shmmax": "1"})").ok());
  CHECK_FALSE(with(R"([{"type": "uts"}])", R"({"kernel.hostname": "h"})").ok());
  CHECK(with(R"([{"type": "uts"}])", R"({"kernel.domainname": "d"})").ok());
  CHECK_FALSE(with(R"([{"type": "network"}, {"type": "ipc"}])", R"({"vm.swappiness": "1"})").ok());
}
