#include "core/cgroup/membership.h"

#include <doctest/doctest.h>

using namespace cryo;

TEST_CASE("/proc/PID/cgroup of a hybrid host") {
  auto m = cgroup::parse_proc_cgroup("9:name=systemd:/\n4:memory:/process_api/aac8\n2:cpu,cpuacct:/a b\n0::/\n");
  REQUIRE(m.ok());
  REQUIRE(m->size() == 4);
  CHECK((*m)[0] == cgroup::Membership{"name=systemd", "/"});
  CHECK((*m)[1] == cgroup::Membership{"memory", "/process_api/aac8"});
  CHECK((*m)[2] == cgroup::Membership{"cpu,cpuacct", "/a b"});
  CHECK((*m)[3] == cgroup::Membership{"", "/"});
  CHECK(!cgroup::parse_proc_cgroup("4:memory\n").ok());
  CHECK(!cgroup::parse_proc_cgroup("4:memory:relative\n").ok());
}

TEST_CASE("--manage-cgroups modes") {
  CHECK(*cgroup::parse_manage("soft") == cgroup::Manage::kSoft);
  CHECK(*cgroup::parse_manage("") == cgroup::Manage::kSoft);
  CHECK(*cgroup::parse_manage("full") == cgroup::Manage::kFull);
  CHECK(*cgroup::parse_manage("none") == cgroup::Manage::kExisting);
  CHECK(*cgroup::parse_manage("props") == cgroup::Manage::kProps);
  CHECK(*cgroup::parse_manage("strict") == cgroup::Manage::kFresh);
  CHECK(*cgroup::parse_manage("ignore") == cgroup::Manage::kIgnore);
  CHECK(!cgroup::parse_manage("hard").ok());
}

TEST_CASE("a hostile cgroup path is refused before anything is made") {
  std::vector<std::string> created;
  std::vector<cgroup::Hierarchy> none;
  for (const char* path : {"/../../etc", "relative", "/a/./b", ""}) {
    auto st = cgroup::join(1, {{"", path}}, none, cgroup::Manage::kSoft, &created);
    CHECK(!st.ok());
  }
  CHECK(created.empty());
}

TEST_CASE("--cgroup-root [controller:]/path") {
  auto r = cgroup::parse_cgroup_root("/a/b/");
  REQUIRE(r.ok());
  CHECK(r->controller.empty());
  CHECK(r->path == "/a/b");
  r = cgroup::parse_cgroup_root("memory:/m");
  REQUIRE(r.ok());
  CHECK(r->controller == "memory");
  CHECK(r->path == "/m");
  r = cgroup::parse_cgroup_root("name=systemd:/");
  REQUIRE(r.ok());
  CHECK(r->path == "/");
  for (const char* bad : {"", "relative", ":/x", "memory:", "/a/../b", "/a//b"}) CHECK(!cgroup::parse_cgroup_root(bad).ok());
}
