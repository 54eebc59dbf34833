#include "core/seccomp/seccomp.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

using namespace cryo::seccomp;

TEST_CASE("profiles are validated by name") {
  Profile p;
  p.default_action = "SCMP_ACT_ALLOW";
  CHECK(validate(p).ok());
  p.architectures = {"SCMP_ARCH_NOPE"};
  CHECK_FALSE(validate(p).ok());
  p.architectures = {"SCMP_ARCH_X86_64"};
  p.rules.push_back({{"mkdir"}, "SCMP_ACT_BOGUS", std::nullopt, {}});
  CHECK_FALSE(validate(p).ok());
  p.rules.back().action = "SCMP_ACT_ERRNO";
  p.rules.back().args.push_back({7, 0, 0, "SCMP_CMP_EQ"});
  CHECK_FALSE(validate(p).ok());  // index above 5
  p.rules.back().args.back().index = 1;
  p.rules.back().args.back().op = "SCMP_CMP_WHAT";
  CHECK_FALSE(validate(p).ok());
  Profile notify;
  notify.default_action = "SCMP_ACT_NOTIFY";
  CHECK_FALSE(validate(notify).ok());
}

TEST_CASE("a loaded filter returns the configured errno, with argument conditions") {
  pid_t child = fork();
  if (child == 0) {
    Profile p;
    p.default_action = "SCMP_ACT_ALLOW";
    p.rules.push_back({{"mkdirat", "mkdir"}, "SCMP_ACT_ERRNO", 42u, {{1, 0700, 0, "SCMP_CMP_EQ"}}});
    p.rules.push_back({{"mkdirat"}, "SCMP_ACT_ERRNO", 42u, {{2, 0700, 0, "SCMP_CMP_EQ"}}});
    p.rules.push_back({{"not_a_syscall"}, "SCMP_ACT_ERRNO", std::nullopt, {}});
    if (!load(p).ok()) _exit(2);
    std::string dir = "/tmp/cryo-seccomp-test-" + std::to_string(getpid());
    bool refused = mkdir(dir.c_str(), 0700) < 0 && errno == 42;
    bool allowed = mkdir(dir.c_str(), 0755) == 0;
    rmdir(dir.c_str());
    _exit(refused && allowed ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
