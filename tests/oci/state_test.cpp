#include "oci/state.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

#include "oci/container.h"
#include "tests/temp_dir.h"

using namespace cryo::oci;

TEST_CASE("state.json round-trips") {
  ContainerState s;
  s.id = "abc";
  s.pid = 42;
  s.start_time = 777;
  s.bundle = "/b";
  s.annotations["k"] = "v";
  s.cgroup_path = "/cryo-abc";
  s.status = ContainerStatus::kCreated;
  auto back = state_from_json(state_to_json(s));
  REQUIRE(back.ok());
  CHECK(back->id == "abc");
  CHECK(back->pid == 42);
  CHECK(back->start_time == 777);
  CHECK(back->annotations.at("k") == "v");
  CHECK(back->cgroup_path == "/cryo-abc");
}

TEST_CASE("container ids are validated") {
  CHECK(validate_id("abc-1_2.3").ok());
  CHECK_FALSE(validate_id("").ok());
  CHECK_FALSE(validate_id("..").ok());
  CHECK_FALSE(validate_id("a/b").ok());
  CHECK_FALSE(validate_id("a b").ok());
}

TEST_CASE("the status follows the init process and the fifo") {
  cryo::testing::TempDir root("state-test");
  auto lock = create_container_dir(root.path, "c1");
  REQUIRE(lock.ok());
  CHECK_FALSE(create_container_dir(root.path, "c1").ok());  // exists
  pid_t child = fork();
  if (child == 0) {
    pause();
    _exit(0);
  }
  ContainerState s;
  s.id = "c1";
  s.status = ContainerStatus::kCreating;
  REQUIRE(save_state(root.path, s).ok());
  CHECK(load_state(root.path, "c1")->status == ContainerStatus::kCreating);
  s.pid = child;
  s.start_time = process_start_time(child);
  s.status = ContainerStatus::kCreated;
  REQUIRE(save_state(root.path, s).ok());
  std::string fifo = container_dir(root.path, "c1") + "/exec.fifo";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  CHECK(load_state(root.path, "c1")->status == ContainerStatus::kCreated);
  unlink(fifo.c_str());
  CHECK(load_state(root.path, "c1")->status == ContainerStatus::kRunning);
  s.paused = true;
  REQUIRE(save_state(root.path, s).ok());
  CHECK(load_state(root.path, "c1")->status == ContainerStatus::kPaused);
  s.paused = false;
  s.start_time += 1;  // the pid now belongs to another process
  REQUIRE(save_state(root.path, s).ok());
  CHECK(load_state(root.path, "c1")->status == ContainerStatus::kStopped);
  s.start_time -= 1;
  REQUIRE(save_state(root.path, s).ok());
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  CHECK(load_state(root.path, "c1")->status == ContainerStatus::kStopped);
  auto missing = load_state(root.path, "nope");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message().find("does not exist") != std::string::npos);
  CHECK(list_ids(root.path)->size() == 1);
}

TEST_CASE("a container lock is exclusive and survives only while the directory exists") {
  cryo::testing::TempDir root("state-test");
  auto first = create_container_dir(root.path, "c2");
  REQUIRE(first.ok());
  pid_t child = fork();
  if (child == 0) {
    // Blocks until the parent releases; then the directory is gone. (The inherited
    // descriptor shares the parent's lock: close it first.)
    close(first->fd());
    auto second = lock_container(root.path, "c2");
    _exit(second.ok() ? 1 : 0);
  }
  usleep(100000);
  int status = 0;
  CHECK(waitpid(child, &status, WNOHANG) == 0);  // still waiting for the lock
  rmdir(container_dir(root.path, "c2").c_str());
  first = cryo::Error("released");  // drops the lock
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("signal names and numbers") {
  CHECK(*parse_signal("KILL") == SIGKILL);
  CHECK(*parse_signal("SIGTERM") == SIGTERM);
  CHECK(*parse_signal("usr1") == SIGUSR1);
  CHECK(*parse_signal("9") == 9);
  CHECK(*parse_signal("RTMIN+2") == SIGRTMIN + 2);
  CHECK_FALSE(parse_signal("NOPE").ok());
  CHECK_FALSE(parse_signal("0").ok());
  CHECK_FALSE(parse_signal("99999999999").ok());
  CHECK_FALSE(parse_signal("RTMIN+x").ok());
}
