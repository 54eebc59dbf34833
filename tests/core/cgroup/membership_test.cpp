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
  CHECK(*cgroup::parse_manage("full") == cgroup::Manage::kSoft);
  CHECK(*cgroup::parse_manage("none") == cgroup::Manage::kExisting);
  CHECK(*cgroup::parse_manage("props") == cgroup::Manage::kExisting);
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
