#include "core/cgroup/cgroup.h"
#include "core/cgroup/device_filter.h"

#include <fcntl.h>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

using namespace cryo::cgroup;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A temp dir laid out like a cgroup v2 directory with the given controllers' files.
struct FakeV2 {
  std::string dir;
  explicit FakeV2(std::initializer_list<const char*> files) {
    char tmpl[] = "/tmp/cryo-cgv2-test-XXXXXX";
    dir = mkdtemp(tmpl);
    for (auto f : files) std::ofstream(dir + "/" + f) << "";
  }
  ~FakeV2() { (void)!system(("rm -rf " + dir).c_str()); }
};

}  // namespace

TEST_CASE("v2 conversions") {
  CHECK(shares_to_weight(2) == 1);
  CHECK(shares_to_weight(1024) == 39);
  CHECK(shares_to_weight(262144) == 10000);
  CHECK(blkio_to_io_weight(10) == 1);
  CHECK(blkio_to_io_weight(1000) == 10000);
}

TEST_CASE("v2 files from resources") {
  Resources r;
  r.memory_limit = 100;
  r.memory_swap = 300;
  r.memory_reservation = 50;
  r.cpu_shares = 1024;
  r.cpu_quota = 20000;
  r.cpu_period = 100000;
  r.pids_limit = -1;
  r.cpuset_cpus = "0-1";
  r.throttle_read_bps.push_back({8, 0, 1000});
  r.hugepage_limits["2MB"] = 4096;
  r.unified["memory.high"] = "90";
  auto files = v2_files(r);
  REQUIRE(files.ok());
  std::map<std::string, std::string> m(files->begin(), files->end());
  CHECK(m["memory.max"] == "100");
  CHECK(m["memory.swap.max"] == "200");
  CHECK(m["memory.low"] == "50");
  CHECK(m["cpu.weight"] == "39");
  CHECK(m["cpu.max"] == "20000 100000");
  CHECK(m["pids.max"] == "max");
  CHECK(m["cpuset.cpus"] == "0-1");
  CHECK(m["io.max"] == "8:0 rbps=1000");
  CHECK(m["hugetlb.2MB.max"] == "4096");
  CHECK(m["memory.high"] == "90");
  Resources unlimited;
  unlimited.memory_limit = -1;
  unlimited.memory_swap = -1;
  unlimited.cpu_quota = -1;
  auto u = v2_files(unlimited);
  std::map<std::string, std::string> um(u->begin(), u->end());
  CHECK(um["memory.max"] == "max");
  CHECK(um["memory.swap.max"] == "max");
  CHECK(um["cpu.max"] == "max 100000");
}

TEST_CASE("v2 refuses what it cannot express") {
  Resources r;
  r.memory_swappiness = 10;
  CHECK_FALSE(v2_files(r).ok());
  Resources swap;
  swap.memory_limit = 200;
  swap.memory_swap = 100;
  CHECK_FALSE(v2_files(swap).ok());
  Resources bad;
  bad.unified["../escape"] = "1";
  CHECK_FALSE(v2_files(bad).ok());
}

TEST_CASE("apply_v2 writes the files of a v2-like directory and names a missing controller") {
  FakeV2 fake({"memory.max", "memory.swap.max", "pids.max", "cpu.weight", "cpu.max"});
  Resources r;
  r.memory_limit = 4096;
  r.pids_limit = 7;
  r.cpu_shares = 2;
  REQUIRE(apply_v2(fake.dir, r).ok());
  CHECK(slurp(fake.dir + "/memory.max") == "4096");
  CHECK(slurp(fake.dir + "/pids.max") == "7");
  CHECK(slurp(fake.dir + "/cpu.weight") == "1");
  Resources io;
  io.blkio_weight = 100;
  auto status = apply_v2(fake.dir, io);
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().message().find("io.weight") != std::string::npos);
  CHECK(status.error().message().find("'io'") != std::string::npos);
}

TEST_CASE("v1 files") {
  Resources r;
  r.memory_limit = 1000;
  r.pids_limit = 5;
  r.devices.push_back({false, 'a', -1, -1, "rwm"});
  r.devices.push_back({true, 'c', 1, 3, "rwm"});
  r.devices.push_back({true, 'c', 136, -1, "rw"});
  auto files = v1_files(r);
  REQUIRE(files.ok());
  CHECK(std::get<2>(files->at(0)) == "1000");
  CHECK(std::get<1>(files->at(2)) == "devices.deny");
  CHECK(std::get<2>(files->at(2)) == "a *:* rwm");
  CHECK(std::get<2>(files->at(3)) == "c 1:3 rwm");
  CHECK(std::get<2>(files->at(4)) == "c 136:* rw");
}

TEST_CASE("hierarchies and mode from mountinfo") {
  const char* hybrid =
      "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
      "40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
  auto h = parse_hierarchies(hybrid);
  REQUIRE(h.size() == 3);
  CHECK(h[0].controllers == std::vector<std::string>{"cpu"});
  CHECK(h[1].controllers == std::vector<std::string>{"name=systemd"});
  CHECK(h[2].v2);
  CHECK(mode_of(h) == Mode::kHybrid);
  CHECK(mode_of(parse_hierarchies("30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")) == Mode::kUnified);
}

// The host's cgroup2 mount (here hybrid, at /sys/fs/cgroup/unified): create, move, freeze, kill, remove.
TEST_CASE("a group on the real cgroup v2 mount") {
  auto all = host_hierarchies();
  REQUIRE(all.ok());
  std::vector<Hierarchy> v2;
  for (auto& h : *all)
    if (h.v2) v2.push_back(h);
  REQUIRE_MESSAGE(!v2.empty(), "this host has no cgroup2 mount");
  Group group(v2, "/cryo-unit-v2-" + std::to_string(getpid()));
  REQUIRE(group.create().ok());
  pid_t child = fork();
  if (child == 0) {
    for (;;) pause();
  }
  REQUIRE(group.add_process(child).ok());
  auto pids = group.processes();
  REQUIRE(pids.ok());
  CHECK(*pids == std::vector<pid_t>{child});
  REQUIRE(group.freeze().ok());
  bool frozen = false;
  for (int i = 0; i < 100 && !frozen; i++) {
    frozen = slurp(*group.dir_for("") + "/cgroup.events").find("frozen 1") != std::string::npos;
    if (!frozen) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(frozen);
  CHECK(*group.frozen());
  REQUIRE(group.thaw().ok());
  CHECK_FALSE(*group.frozen());
  REQUIRE(group.signal_all(SIGKILL).ok());  // cgroup.kill
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  REQUIRE(group.destroy().ok());
  struct stat st;
  CHECK(stat(group.dir_for("")->c_str(), &st) != 0);
}

// The eBPF device filter on a real cgroup v2 group: /dev/null denied, /dev/zero allowed.
TEST_CASE("the v2 device filter is enforced") {
  auto all = host_hierarchies();
  REQUIRE(all.ok());
  std::vector<Hierarchy> v2;
  for (auto& h : *all)
    if (h.v2) v2.push_back(h);
  REQUIRE(!v2.empty());
  Group group(v2, "/cryo-unit-devices-" + std::to_string(getpid()));
  REQUIRE(group.create().ok());
  std::vector<DeviceRule> rules = {{false, 'a', -1, -1, "rwm"}, {true, 'c', 1, 5, "rwm"}, {true, 'c', 1, 3, "w"}};
  auto attached = attach_device_filter(*group.dir_for(""), rules);
  REQUIRE_MESSAGE(attached.ok(), attached.error().message());
  int ready[2];
  REQUIRE(pipe(ready) == 0);
  pid_t child = fork();
  if (child == 0) {
    char c;
    (void)!read(ready[0], &c, 1);  // wait until we are in the group
    int zero = open("/dev/zero", O_RDONLY);
    int null_read = open("/dev/null", O_RDONLY);
    bool null_denied = null_read < 0 && errno == EPERM;
    int null_write = open("/dev/null", O_WRONLY);
    _exit(zero >= 0 && null_denied && null_write >= 0 ? 0 : 1);
  }
  REQUIRE(group.add_process(child).ok());
  (void)!write(ready[1], "x", 1);
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WEXITSTATUS(status) == 0);
  close(ready[0]);
  close(ready[1]);
  REQUIRE(group.destroy().ok());
}

TEST_CASE("device filter programs end in a default deny") {
  auto prog = device_filter_program({});
  REQUIRE(prog.size() == 8);
  CHECK(prog[6].imm == 0);
  CHECK(prog.back().code == (BPF_JMP | BPF_EXIT));
  auto one = device_filter_program({{true, 'c', 1, 3, "rwm"}});
  CHECK(one.size() == 8 + 5);  // type, major, minor checks, return, exit
}

TEST_CASE("a rule matching everything ends the program") {
  auto prog = device_filter_program({{true, 'c', 1, 3, "rwm"}, {false, 'a', -1, -1, "rwm"}});
  CHECK(prog.size() == 6 + 2);  // the earlier rule can never decide
  CHECK(prog[6].imm == 0);
}
