#include "core/cgroup/props.h"

#include <doctest/doctest.h>

#include "core/cgroup/tree_cgroups.h"

using namespace cryo;
using Writes = std::vector<std::pair<std::string, std::string>>;

TEST_CASE("only the listed cgroup files are saved and restored") {
  CHECK(cgroup::prop_rank(false, "memory.limit_in_bytes"));
  CHECK(cgroup::prop_rank(false, "hugetlb.2MB.limit_in_bytes"));
  CHECK(cgroup::prop_rank(false, "hugetlb.1GB.rsvd.limit_in_bytes"));
  CHECK(cgroup::prop_rank(true, "hugetlb.2MB.max"));
  CHECK(cgroup::prop_rank(true, "memory.max"));
  CHECK(*cgroup::prop_rank(false, "cpuset.cpus") < *cgroup::prop_rank(false, "cpuset.mem_exclusive"));
  CHECK(*cgroup::prop_rank(true, "cgroup.subtree_control") < *cgroup::prop_rank(true, "memory.max"));
  for (const char* name : {"cgroup.procs", "tasks", "release_agent", "notify_on_release", "freezer.state",
                           "cgroup.freeze", "cgroup.kill", "memory.usage_in_bytes", "hugetlb.2MB.usage_in_bytes",
                           "hugetlb.xMB.max", "hugetlb..max", "../memory.max", "cgroup.threads"}) {
    CHECK_MESSAGE(!cgroup::prop_rank(false, name), name);
    CHECK_MESSAGE(!cgroup::prop_rank(true, name), name);
  }
  CHECK(!cgroup::prop_rank(true, "memory.limit_in_bytes"));  // v1 names only in v1
  CHECK(!cgroup::prop_rank(false, "memory.max"));
}

TEST_CASE("what a cgroup file reads becomes what is written back") {
  CHECK(cgroup::value_to_save("memory.oom_control", "oom_kill_disable 1\nunder_oom 0\noom_kill 4\n") == "1");
  CHECK(cgroup::value_to_save("memory.limit_in_bytes", "268435456\n") == "268435456");
  CHECK(cgroup::value_to_save("io.max", "") == "");
  CHECK(cgroup::value_to_save("io.weight", "default 100\n8:0 50\n") == "default 100\n8:0 50");
}

TEST_CASE("the writes that put a property back") {
  CHECK(cgroup::writes_for({"pids.max", "64"}, "max") == Writes{{"pids.max", "64"}});
  CHECK(cgroup::writes_for({"pids.max", "64"}, "64") == Writes{});  // the same already
  CHECK(cgroup::writes_for({"blkio.throttle.read_bps_device", "8:0 1024\n8:16 2048"}, "") ==
        Writes{{"blkio.throttle.read_bps_device", "8:0 1024"}, {"blkio.throttle.read_bps_device", "8:16 2048"}});
  CHECK(cgroup::writes_for({"devices.list", "c 1:3 rwm\nc 1:5 r"}, "a *:* rwm") ==
        Writes{{"devices.deny", "a"}, {"devices.allow", "c 1:3 rwm"}, {"devices.allow", "c 1:5 r"}});
  CHECK(cgroup::writes_for({"cgroup.subtree_control", "cpu memory pids"}, "memory") ==
        Writes{{"cgroup.subtree_control", "+cpu"}, {"cgroup.subtree_control", "+pids"}});
  CHECK(cgroup::controllers_needed({{"cgroup.max.depth", "3"}, {"memory.max", "1"}, {"memory.high", "1"},
                                    {"hugetlb.2MB.max", "0"}}) == std::vector<std::string>{"memory", "hugetlb"});
}

TEST_CASE("--cgroup-root moves the paths below the root process's cgroup") {
  CHECK(*cgroup::rebase_path("/a/job", "/a/job", "/new") == "/new");
  CHECK(*cgroup::rebase_path("/a/job/sub", "/a/job", "/new") == "/new/sub");
  CHECK(*cgroup::rebase_path("/a/job/sub", "/a/job", "/") == "/sub");
  CHECK(*cgroup::rebase_path("/a/job", "/a/job", "/") == "/");
  CHECK(*cgroup::rebase_path("/x", "/", "/new") == "/new/x");
  CHECK(*cgroup::rebase_path("/", "/", "/new") == "/new");
  CHECK(!cgroup::rebase_path("/a", "/a/job", "/new"));
  CHECK(!cgroup::rebase_path("/a/jobs", "/a/job", "/new"));
}

TEST_CASE("a hostile image's cgroups are refused before anything is made") {
  std::vector<std::string> created;
  for (auto [path, file] : std::vector<std::pair<std::string, std::string>>{
           {"/../../etc", "pids.max"}, {"relative", "pids.max"}, {"/", "pids.max"}, {"/ok", "release_agent"},
           {"/ok", "cgroup.procs"}, {"/ok", "../../../etc/passwd"}}) {
    image::Tree tree;
    auto* dir = tree.add_cgroups();
    dir->set_controllers("pids");
    dir->set_path(path);
    auto* prop = dir->add_props();
    prop->set_name(file);
    prop->set_value("1");
    std::string what = path + " " + file;
    CHECK_MESSAGE(!cgroup::restore_tree_cgroups(tree, {}, cgroup::Manage::kFull, {}, &created).ok(), what);
  }
  CHECK(created.empty());
}

TEST_CASE("a hostile image's delegated files are refused") {
  std::vector<std::string> created;
  for (const char* name : {"../../etc/shadow", "", ".", "..", "a/b"}) {
    image::Tree tree;
    auto* dir = tree.add_cgroups();
    dir->set_controllers("pids");
    dir->set_path("/ok");
    dir->set_uid(1000);
    dir->set_gid(1000);
    dir->add_owned_files(name);
    CHECK_MESSAGE(!cgroup::restore_tree_cgroups(tree, {}, cgroup::Manage::kFull, {}, &created).ok(), name);
  }
  CHECK(created.empty());
}
